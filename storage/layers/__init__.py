"""Generic layers: drivers that stand in front of any driver and change one thing.

Each is ``Name(inner, **options)`` over any driver and stacks with the others in any order,
for instance ``Retry(Compress(Encrypt(RedisDriver(url), keys=[key])))``. Layers work on bytes
under the serializer, so etags, listing, watch and conditional writes keep working through
them. docs/layers.md describes each one. The optional libraries (cryptography, zstandard,
opentelemetry) are imported only when a layer that needs one is built.
"""

from .cache import Cache
from .compress import Compress, DecompressionError
from .encrypt import DecryptionError, Encrypt, generate_key, keys_from_env, rotate
from .fallback import Fallback
from .limit import Limit, LimitError
from .readonly import ReadOnly
from .retry import Retry
from .stats import Stats
from .timeout import Timeout
from .trace import Trace
from .ttl import DefaultTTL

__all__ = [
    "Cache",
    "Compress",
    "DecompressionError",
    "DecryptionError",
    "DefaultTTL",
    "Encrypt",
    "Fallback",
    "Limit",
    "LimitError",
    "ReadOnly",
    "Retry",
    "Stats",
    "Timeout",
    "Trace",
    "generate_key",
    "keys_from_env",
    "rotate",
]
