"""One interface over the three on-device runtimes: LiteRT, TFLite Micro and ONNX Runtime.

A backend turns an artifact's bytes into a :class:`LoadedModel` once (interpreter built, tensors
allocated): after boot the hot path only calls ``run``. ``LoadedModel.run`` takes the inputs in the
artifact's own dtype (int8 for TFLite, float32 for ONNX QDQ) and returns its first output.

* ``litert``         ai-edge-litert; ``mode`` picks XNNPACK (default delegate, fastest), the builtin
                     kernels, or the reference kernels (the ones TFLite Micro mirrors).
* ``litert-edgetpu`` LiteRT with the Edge TPU delegate (``libedgetpu.so.1``) when that library is
                     present; otherwise the int8 TFLite runs on the CPU and :attr:`BackendInfo.notes`
                     says so.
* ``tflite-micro``   the TFLite Micro Python interpreter (x86-64 wheels only; reference kernels, so it
                     says nothing of MCU speed); imported lazily.
* ``onnxruntime``    ONNX Runtime (the extra ``onnxruntime``), one intra-op thread, sequential execution.

Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kasmina_edge.contracts.errors import KasminaError, MissingExtraError
from kasmina_edge.core.formats import ONNX_FORMATS, TFLITE_FORMATS
from kasmina_edge.core.tensors import TensorInfo

EDGETPU_LIBRARY = "libedgetpu.so.1"
LiteRtMode = Literal["xnnpack", "builtin", "reference"]
BACKEND_NAMES = ("litert", "litert-edgetpu", "tflite-micro", "onnxruntime")
MICRO_DEFAULT_ARENA_FACTOR = 10  # tflite_micro.runtime.Interpreter's own default arena: 10x the model size
MICRO_MIN_ARENA = 64 * 1024  # too small an arena can crash the process rather than raise: stay generous


class BackendError(KasminaError):
    """An artifact a backend cannot load or run (wrong format, corrupt model, missing runtime)."""


@dataclass
class BackendInfo:
    """What a backend is and what it could not do (a missing delegate, a fallback)."""

    name: str
    runtime: str  # package and version
    accelerator: str | None = None  # e.g. "edgetpu" when the delegate loaded
    notes: list[str] = field(default_factory=list)
    reference_tolerance_lsb: int = 0  # how far it may differ from the build's reference vectors


class LoadedModel(ABC):
    """An artifact ready to run: built and allocated once, then only ``run``."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @abstractmethod
    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run one batch-1 invocation; returns the first output (a fresh array)."""


class Backend(ABC):
    """A runtime that can load artifacts of some formats."""

    name: str
    formats: frozenset[str]

    @abstractmethod
    def info(self) -> BackendInfo: ...

    @abstractmethod
    def load(self, data: bytes, name: str, *, arena_bytes: int | None = None) -> LoadedModel: ...

    def check_format(self, fmt: str, artifact: str) -> None:
        if fmt not in self.formats:
            raise BackendError(
                f"artifact {artifact!r} is {fmt}; the {self.name} backend runs {', '.join(sorted(self.formats))}"
            )


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence C++ log lines on fd 2 ("Created TensorFlow Lite XNNPACK delegate ...") at load time."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreter): nothing to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _package_version(dist: str) -> str:
    from importlib import metadata

    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return f"{dist} (version unknown)"


# --------------------------------------------------------------------------------------------- LiteRT


def _litert_infos(details: list[dict[str, Any]]) -> tuple[TensorInfo, ...]:
    out = []
    for d in details:
        scale, zp = d.get("quantization", (0.0, 0))
        quantized = d["dtype"] != np.float32 and scale != 0.0
        out.append(
            TensorInfo(
                name=str(d["name"]),
                shape=tuple(int(s) for s in d["shape"]),
                dtype=np.dtype(d["dtype"]).name,
                scale=float(scale) if quantized else None,
                zero_point=int(zp) if quantized else 0,
            )
        )
    return tuple(out)


class LiteRtModel(LoadedModel):
    def __init__(self, interpreter: Any, name: str) -> None:
        self.name = name
        self._interp = interpreter
        in_details = interpreter.get_input_details()
        out_details = interpreter.get_output_details()
        self.inputs = _litert_infos(in_details)
        self.outputs = _litert_infos(out_details)
        self._in_idx = [int(d["index"]) for d in in_details]
        self._out_idx = int(out_details[0]["index"])
        # The public set_tensor/invoke/get_tensor are thin wrappers over the native object; invoke() adds a
        # check that no numpy view into the interpreter's buffers is alive. This class never takes such a
        # view (get_tensor copies), so the hot path calls the native methods directly when they are there.
        native = getattr(interpreter, "_interpreter", None)
        if native is not None and all(hasattr(native, m) for m in ("SetTensor", "Invoke", "GetTensor")):
            self._set = native.SetTensor
            self._invoke = native.Invoke
            get = native.GetTensor
            self._get = lambda idx: get(idx, 0)
        else:
            self._set = interpreter.set_tensor
            self._invoke = interpreter.invoke
            self._get = interpreter.get_tensor
        self._single = len(self._in_idx) == 1

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        if self._single:
            self._set(self._in_idx[0], inputs[0])
        else:
            for idx, value in zip(self._in_idx, inputs, strict=True):
                self._set(idx, value)
        self._invoke()
        return self._get(self._out_idx)  # type: ignore[no-any-return]


def edgetpu_library_present() -> bool:
    """Whether ``libedgetpu.so.1`` can be loaded (probed with ctypes: LiteRT's own loader logs noise)."""
    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
    except OSError:
        return False
    return True


class LiteRtBackend(Backend):
    formats = TFLITE_FORMATS

    def __init__(self, mode: LiteRtMode = "xnnpack", *, edgetpu: bool = False) -> None:
        try:
            from ai_edge_litert import interpreter as litert
        except ImportError as exc:  # a base dependency: only a broken install lands here
            raise BackendError(f"ai-edge-litert is not importable ({exc}): pip install ai-edge-litert") from None
        self._litert = litert
        self.mode: LiteRtMode = mode
        self.name = "litert-edgetpu" if edgetpu else "litert"
        self._delegate: Any = None
        self._notes: list[str] = []
        if edgetpu:
            if edgetpu_library_present():
                try:
                    self._delegate = litert.load_delegate(EDGETPU_LIBRARY)
                except (OSError, ValueError, RuntimeError) as exc:
                    self._notes.append(f"Edge TPU delegate present but failed to load ({exc}); running on the CPU")
            else:
                self._notes.append(
                    f"Edge TPU delegate absent ({EDGETPU_LIBRARY} not found): the int8 TFLite runs on the CPU "
                    f"({mode} kernels)"
                )

    @property
    def accelerated(self) -> bool:
        return self._delegate is not None

    def info(self) -> BackendInfo:
        tolerance = {"reference": 1, "builtin": 1, "xnnpack": 3}[self.mode]
        return BackendInfo(
            name=self.name,
            runtime=_package_version("ai-edge-litert") + f" ({self.mode} kernels)",
            accelerator="edgetpu" if self.accelerated else None,
            notes=list(self._notes),
            reference_tolerance_lsb=tolerance,
        )

    def load(self, data: bytes, name: str, *, arena_bytes: int | None = None) -> LoadedModel:
        litert = self._litert
        resolver = {
            "xnnpack": litert.OpResolverType.AUTO,
            "builtin": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            "reference": litert.OpResolverType.BUILTIN_REF,
        }[self.mode]
        delegates = [self._delegate] if self._delegate is not None else None
        try:
            with quiet_native_stderr():
                interp = litert.Interpreter(
                    model_content=bytes(data),
                    experimental_op_resolver_type=resolver,
                    experimental_delegates=delegates,
                    num_threads=1,
                )
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"artifact {name!r}: LiteRT cannot load it ({str(exc).splitlines()[0]})") from None
        return LiteRtModel(interp, name)


# --------------------------------------------------------------------------------------------- TFLite Micro


def _micro_infos(interp: Any, n: int, output: bool) -> tuple[TensorInfo, ...]:
    out = []
    for i in range(n):
        d = interp.get_output_details(i) if output else interp.get_input_details(i)
        q = d.get("quantization_parameters") or {}
        scales = np.asarray(q.get("scales", []), dtype=np.float64).reshape(-1)
        zps = np.asarray(q.get("zero_points", []), dtype=np.int64).reshape(-1)
        quantized = scales.size > 0 and d["dtype"] != np.float32
        out.append(
            TensorInfo(
                name=f"{'output' if output else 'input'}{i}",
                shape=tuple(int(s) for s in d["shape"]),
                dtype=np.dtype(d["dtype"]).name,
                scale=float(scales[0]) if quantized else None,
                zero_point=int(zps[0]) if quantized and zps.size else 0,
            )
        )
    return tuple(out)


def _tflite_io_counts(data: bytes) -> tuple[int, int]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(bytearray(data), 0)
    sub = model.Subgraphs(0)
    return int(sub.InputsLength()), int(sub.OutputsLength())


class MicroModel(LoadedModel):
    def __init__(self, interpreter: Any, name: str, n_in: int, n_out: int) -> None:
        self.name = name
        self._interp = interpreter
        self.inputs = _micro_infos(interpreter, n_in, output=False)
        self.outputs = _micro_infos(interpreter, n_out, output=True)
        self._set = interpreter.set_input
        self._invoke = interpreter.invoke
        self._get = interpreter.get_output

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        for i, value in enumerate(inputs):
            self._set(value, i)
        self._invoke()
        return np.array(self._get(0))


class MicroBackend(Backend):
    name = "tflite-micro"
    formats = frozenset({"tflite-int8"})

    def __init__(self) -> None:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            raise BackendError(
                f"the TFLite Micro Python interpreter ships for x86-64 only, not {platform.machine()}"
            )
        from kasmina_edge.contracts.optional import require

        self._runtime = require("tflite_micro.python.tflite_micro.runtime", "the TFLite Micro backend")

    def info(self) -> BackendInfo:
        return BackendInfo(
            name=self.name,
            runtime=_package_version("tflite-micro") + " (reference kernels: timings say nothing of an MCU)",
            reference_tolerance_lsb=1,
        )

    def load(self, data: bytes, name: str, *, arena_bytes: int | None = None) -> LoadedModel:
        arena = arena_bytes or max(MICRO_MIN_ARENA, MICRO_DEFAULT_ARENA_FACTOR * len(data))
        n_in, n_out = _tflite_io_counts(data)
        try:
            with quiet_native_stderr():
                interp = self._runtime.Interpreter.from_bytes(bytes(data), arena_size=int(arena))
        except (RuntimeError, ValueError) as exc:
            raise BackendError(
                f"artifact {name!r}: TFLite Micro cannot load it with a {arena:,} B arena ({exc})"
            ) from None
        return MicroModel(interp, name, n_in, n_out)


# --------------------------------------------------------------------------------------------- ONNX Runtime


_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
}


class OrtModel(LoadedModel):
    def __init__(self, session: Any, name: str) -> None:
        self.name = name
        self._session = session
        ins, outs = session.get_inputs(), session.get_outputs()
        self.inputs = tuple(
            TensorInfo(i.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in i.shape),
                       _ORT_DTYPES.get(i.type, "float32"))
            for i in ins
        )
        self.outputs = tuple(
            TensorInfo(o.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in o.shape),
                       _ORT_DTYPES.get(o.type, "float32"))
            for o in outs
        )
        self._in_names = [i.name for i in ins]
        self._out_names = [outs[0].name]
        # session.run validates its arguments in Python on every call (~4 us of a ~15 us call here); the
        # native session behind it takes the same feed directly. Public path when that object is not there.
        native = getattr(session, "_sess", None)
        if native is not None and hasattr(native, "run"):
            import onnxruntime as ort

            options = ort.RunOptions()
            run_native = native.run
            self._run = lambda names, feed: run_native(names, feed, options)
        else:
            self._run = session.run

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        feed = dict(zip(self._in_names, inputs, strict=True))
        return self._run(self._out_names, feed)[0]  # type: ignore[no-any-return]


class OrtBackend(Backend):
    name = "onnxruntime"
    formats = ONNX_FORMATS

    def __init__(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:  # an extra: a device runs LiteRT or ONNX Runtime, rarely both
            raise MissingExtraError(
                "onnxruntime is not installed (needed for ONNX bundles, target x86): "
                "pip install 'kasmina-edge[onnxruntime]'"
            ) from None

        self._ort = ort
        self._options = ort.SessionOptions()
        self._options.intra_op_num_threads = 1
        self._options.inter_op_num_threads = 1
        self._options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._options.log_severity_level = 3

    def info(self) -> BackendInfo:
        return BackendInfo(name=self.name, runtime=_package_version("onnxruntime"), reference_tolerance_lsb=1)

    def load(self, data: bytes, name: str, *, arena_bytes: int | None = None) -> LoadedModel:
        try:
            session = self._ort.InferenceSession(bytes(data), self._options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(
                f"artifact {name!r}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})"
            ) from None
        return OrtModel(session, name)


# --------------------------------------------------------------------------------------------- choice


def open_backend(name: str, *, mode: LiteRtMode = "xnnpack") -> Backend:
    """The backend for a profile's ``runtime`` (``core.profiles.HardwareProfile.runtime``)."""
    if name == "litert":
        return LiteRtBackend(mode)
    if name == "litert-edgetpu":
        return LiteRtBackend(mode, edgetpu=True)
    if name == "tflite-micro":
        return MicroBackend()
    if name == "onnxruntime":
        return OrtBackend()
    raise BackendError(f"unknown runtime {name!r} (known: {', '.join(BACKEND_NAMES)})")


def backend_for_format(fmt: str, preferred: str | None = None, *, mode: LiteRtMode = "xnnpack") -> Backend:
    """``preferred`` when it runs ``fmt``, otherwise the default runtime for the format."""
    if preferred is not None:
        backend = open_backend(preferred, mode=mode)
        if fmt in backend.formats:
            return backend
        raise BackendError(f"runtime {preferred} cannot run {fmt} artifacts")
    if fmt in TFLITE_FORMATS:
        return LiteRtBackend(mode)
    if fmt in ONNX_FORMATS:
        return OrtBackend()
    raise BackendError(f"no runtime here runs {fmt!r} artifacts")
