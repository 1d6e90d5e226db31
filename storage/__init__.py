"""unistorage's core: one async key-value API in front of pluggable drivers.

Start with `create_storage`; write a driver by subclassing `Driver`, and something that stands
in front of any driver by subclassing `Layer` (generic ones live in `storage.layers`).
"""

from .driver import (
    META_SUFFIX,
    Capabilities,
    Driver,
    Unwatch,
    WatchCallback,
    Watchers,
    WatchEvent,
)
from .errors import (
    ConflictError,
    DriverError,
    InvalidArgumentError,
    InvalidKeyError,
    LockLostError,
    LockUnavailableError,
    NotFoundError,
    ReadOnlyError,
    SerializationError,
    StorageError,
    UnsupportedError,
)
from .factory import create_driver
from .keys import join_keys, normalize_base, normalize_key
from .layer import Layer, ValueLayer
from .lock import Lock
from .mounts import Mount
from .registry import available_drivers, driver_class, register_driver
from .storage import Storage, create_storage
from .streams import Reader, Writer
from .sync import SyncStorage
from .typed import Codec, TypedView
from .values import JSONSerializer, Serializer, default_serializer

#: The version of the ``unistorage`` distribution: the one place it is written (pyproject.toml
#: reads it from here).
__version__ = "0.1.0"

__all__ = [
    "META_SUFFIX",
    "Capabilities",
    "Codec",
    "ConflictError",
    "Driver",
    "DriverError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "JSONSerializer",
    "Layer",
    "Lock",
    "LockLostError",
    "LockUnavailableError",
    "Mount",
    "NotFoundError",
    "ReadOnlyError",
    "Reader",
    "SerializationError",
    "Serializer",
    "Storage",
    "StorageError",
    "SyncStorage",
    "TypedView",
    "UnsupportedError",
    "Unwatch",
    "ValueLayer",
    "WatchCallback",
    "WatchEvent",
    "Watchers",
    "Writer",
    "__version__",
    "available_drivers",
    "create_driver",
    "create_storage",
    "default_serializer",
    "driver_class",
    "join_keys",
    "normalize_base",
    "normalize_key",
    "register_driver",
]
