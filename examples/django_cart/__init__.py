"""The cart on Django: sessions in a unistorage driver through ``SESSION_ENGINE`` and the
cache in one through ``CACHES``. Run with
``DJANGO_SETTINGS_MODULE=examples.django_cart.settings python -m django runserver``.
"""
