"""The cart on Flask: server-side sessions in a unistorage driver through
`UnistorageSessionInterface` (the sync API). Run with ``flask --app examples.flask_cart run``.
"""

from .app import create_app

__all__ = ["create_app"]
