"""Artifact formats and kinds: the names a bundle's manifest uses, defined once for the build and the device.

A build target (``targets/*.toml``) asks for one of :data:`TARGET_FORMATS`. The artifacts the build writes
carry that format or a variant of it: ``tflite-edgetpu`` (a model compiled for the Edge TPU) and
``onnx-qcdq`` (Brevitas QAT's quantize-clip-dequantize graph). A runtime loads every TFLite format with
LiteRT or TFLite Micro and every ONNX format with onnxruntime.
"""

from __future__ import annotations

from typing import Literal, get_args

TargetFormat = Literal["tflite-int8", "onnx-qdq"]
TARGET_FORMATS: tuple[str, ...] = get_args(TargetFormat)
TFLITE_FORMATS = frozenset({"tflite-int8", "tflite-edgetpu"})
ONNX_FORMATS = frozenset({"onnx-qdq", "onnx-qcdq"})

# Artifacts a device keeps in its own storage and runs: not reports, reference vectors or C sources.
RUNNABLE_KINDS = ("segment", "kernel", "policy")
