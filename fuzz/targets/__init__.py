"""The fuzz targets, one module each (see fuzz/__init__.py)."""
