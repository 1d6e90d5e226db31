"""Generic layers: drivers that stand in front of any driver and change one thing.

Each is ``Name(inner, **options)`` and stacks with the others in any order.
"""

from .readonly import ReadOnly
from .ttl import DefaultTTL

__all__ = ["DefaultTTL", "ReadOnly"]
