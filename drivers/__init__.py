"""The built-in drivers, one module each; found through the ``unistorage.drivers`` entry points.

Importing this package imports no backend library: each driver module imports its own.
"""
