"""kasmina-edge: grow and adapt small ECG networks from host to edge device."""

__version__ = "0.1.0"
