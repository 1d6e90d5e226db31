"""Settings of the Django cart: sessions and cache both in one unistorage Storage."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "examples.django_cart.urls"
INSTALLED_APPS = ["django.contrib.sessions"]
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
USE_TZ = True

#: Any driver URL: the sessions and the cache live there.
UNISTORAGE_STORAGE = os.environ.get("CART_STORE", "memory://")
SESSION_ENGINE = "sessions.django.engine"
CACHES = {"default": {"BACKEND": "sessions.django.cache.UnistorageCache", "LOCATION": ""}}
