"""Maintained configuration files shipped with the package (read through importlib.resources)."""
