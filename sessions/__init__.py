"""Server-side web sessions over any unistorage Storage."""
