"""unistorage's core: one async key-value API in front of pluggable drivers.

Start with `create_storage`; write a driver by subclassing `Driver`.
"""

from .driver import META_SUFFIX, Driver, Unwatch, WatchCallback, Watchers, WatchEvent
from .errors import (
    ConflictError,
    DriverError,
    InvalidArgumentError,
    InvalidKeyError,
    ReadOnlyError,
    SerializationError,
    StorageError,
    UnsupportedError,
)
from .keys import join_keys, normalize_base, normalize_key
from .mounts import Mount
from .registry import available_drivers, create_driver, driver_class, register_driver
from .storage import Storage, create_storage
from .values import JSONSerializer, Serializer, default_serializer

__all__ = [
    "META_SUFFIX",
    "ConflictError",
    "Driver",
    "DriverError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "JSONSerializer",
    "Mount",
    "ReadOnlyError",
    "SerializationError",
    "Serializer",
    "Storage",
    "StorageError",
    "UnsupportedError",
    "Unwatch",
    "WatchCallback",
    "WatchEvent",
    "Watchers",
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
