"""Runnable examples of unistorage (each one a package: ``python -m examples.<name>``)."""
