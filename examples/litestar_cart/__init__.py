"""The cart on Litestar: our sessions through `SessionPlugin`, Litestar's response cache on
the same unistorage Storage through `UnistorageStore`.

Run it with ``python -m examples.litestar_cart`` and open http://localhost:8000.
"""

from .app import create_app

__all__ = ["create_app"]
