"""The single source of truth shared by host, device and cloud: lifecycle, telemetry, commands, manifest.

Imports only the standard library, numpy, pydantic and cryptography.
"""
