"""Lazy imports of optional dependencies, failing with the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from kasmina_edge.contracts.errors import MissingExtraError

# module name -> (pip extra, what it is for)
_EXTRAS: dict[str, str] = {
    "wfdb": "host",
    "matplotlib": "host",
    "matplotlib.pyplot": "host",
    "amqtt": "host",
    "tflite_micro": "host",
    "torch": "host",
    "brevitas": "host",
    "litert_torch": "host",
    "onnx": "host",
    "triton": "gpu",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise a one-line error naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRAS.get(module, _EXTRAS.get(module.split(".")[0], "host"))
        why = f" (needed for {purpose})" if purpose else ""
        raise MissingExtraError(
            f"{module} is not installed{why}: pip install 'kasmina-edge[{extra}]'"
        ) from exc
