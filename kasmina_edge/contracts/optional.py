"""Lazy imports of optional dependencies, failing with the extra to install."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
    "onnxruntime": "onnxruntime",
    "fastapi": "server",
    "uvicorn": "server",
    "sse_starlette": "server",
    "sqlalchemy": "server",
    "alembic": "server",
    "psycopg": "server",
    "cyclonedx": "compliance",
    "sklearn": "research",
    "optuna": "research",
}


# Imports that talk on stderr on every run: TensorFlow's and absl's C++ logging (LiteRT), torchao's
# notes on optional CUDA kernels, torch's pytree deprecation. Set KASMINA_VERBOSE=1 to see them.
_NOISY = frozenset({"litert_torch", "brevitas"})
_NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "absl")


@contextmanager
def _quiet() -> Iterator[None]:
    """stderr's file descriptor to /dev/null for a while: C++ logging ignores Python's sys.stderr."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import(module: str) -> ModuleType:
    root = module.split(".")[0]
    if root in _NOISY and root not in sys.modules and not os.environ.get("KASMINA_VERBOSE"):
        with _quiet():
            return importlib.import_module(module)
    return importlib.import_module(module)


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise a one-line error naming the extra that provides it."""
    try:
        return _import(module)
    except ImportError as exc:
        extra = _EXTRAS.get(module, _EXTRAS.get(module.split(".")[0], "host"))
        why = f" (needed for {purpose})" if purpose else ""
        raise MissingExtraError(
            f"{module} is not installed{why}: pip install 'kasmina-edge[{extra}]'"
        ) from exc
