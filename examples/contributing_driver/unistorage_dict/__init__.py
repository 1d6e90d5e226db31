"""A unistorage driver that keeps keys in a dict: CONTRIBUTING.md's example, as a package."""
