"""The shopping cart of Astro's sessions guide, on unistorage sessions and FastAPI.

Run it with ``python -m examples.cart`` and open http://localhost:8000.
"""

from .app import create_app

__all__ = ["create_app"]
