"""ExecuTorch beside the project's runtime, on the same trained model, in one process (item 3 of issue 21).

    .venv-et/bin/python tools/bench_runtime_executorch.py --workdir DEMO_WORKDIR [--json OUT.json]

Run by tools/bench_runtime.py in ``.venv-et`` (tools/bench_executorch_venv.sh: the project's venv plus
executorch, never the device install). The demo checkpoint's base is exported whole (BN folded, as the build
lowers it) with ExecuTorch's XNNPACK delegate in fp32 and in int8 (PT2E, XNNPACKQuantizer, symmetric
per-channel, calibrated on the record's beats), run through ExecuTorch's Python runtime with one thread, and
timed interleaved with LiteRT (the same model whole, int8), our segmented chain (the demo bundle) and ONNX
Runtime (the x86 bundle when present): per window, and per device loop (the same DeviceRuntime streaming the
same record, ExecuTorch's model as the image's only segment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kasmina_edge.contracts.bundle import read_bundle  # noqa: E402
from kasmina_edge.core.tensors import TensorInfo  # noqa: E402
from kasmina_edge.ecg.sources import open_source  # noqa: E402
from kasmina_edge.ecg.windowing import StreamingBeatizer  # noqa: E402
from kasmina_edge.runtime.backends import LiteRtBackend, LoadedModel, OrtBackend  # noqa: E402
from kasmina_edge.runtime.engine import DeviceRuntime, RuntimeConfig  # noqa: E402
from kasmina_edge.runtime.executor import SegmentedExecutor  # noqa: E402
from kasmina_edge.runtime.image import Image, load_image  # noqa: E402

DATA = REPO.parent / "shared" / "data"


class EtModel(LoadedModel):
    """An ExecuTorch program's ``forward`` behind the runtime's LoadedModel interface (float in, float out)."""

    def __init__(self, method: Any, name: str, inputs: tuple[TensorInfo, ...], n_classes: int) -> None:
        import torch

        self._torch = torch
        self._method = method
        self.name = name
        self.inputs = inputs
        self.outputs = (TensorInfo("logits", (1, n_classes), "float32"),)

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        out = self._method.execute([self._torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in inputs])
        return out[0].numpy()  # type: ignore[no-any-return]


def _whole_module(checkpoint: Path) -> Any:
    import torch

    from kasmina_edge.compile.pipeline import load_segmented

    model, _, _ = load_segmented(checkpoint, None)

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.segs = torch.nn.ModuleList(model.segments)

        def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
            h = x
            for s in self.segs[:-1]:
                h = s(h)
            return self.segs[-1](h, rr)

    return Whole().eval()


def export_pte(whole: Any, x: np.ndarray, rr: np.ndarray, int8: bool) -> bytes:
    """The model as an ExecuTorch program, XNNPACK-delegated; int8 through PT2E with XNNPACK's quantizer."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    example = (torch.from_numpy(x[:1]), torch.from_numpy(rr[:1]))
    ep = torch.export.export(whole, example)
    if int8:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(ep.module(), quantizer)
        for i in range(0, min(512, x.shape[0])):  # calibration: the record's own beats, one at a time
            prepared(torch.from_numpy(x[i : i + 1]), torch.from_numpy(rr[i : i + 1]))
        ep = torch.export.export(convert_pt2e(prepared), example)
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    return bytes(prog.buffer)


def load_pte(data: bytes, name: str, image: Image) -> EtModel:
    from executorch.runtime import Runtime

    with tempfile.NamedTemporaryFile(suffix=".pte", delete=False) as f:
        f.write(data)
    try:
        program = Runtime.get().load_program(Path(f.name))
        method = program.load_method("forward")
    finally:
        os.unlink(f.name)
    rr = image.rr_input
    ins = (TensorInfo("window", tuple(image.input.shape), "float32"),
           *((TensorInfo("rr", tuple(rr.shape), "float32"),) if rr is not None else ()))
    return EtModel(method, name, ins, len(image.classes))


def et_image(base: Image, model: EtModel, x: np.ndarray, rr: np.ndarray) -> Image:
    """The bundle's image with ExecuTorch's whole model as its only segment (reference vectors: its own outputs,
    so the boot check passes; the agreement with our chain is measured separately)."""
    entry = base.segment_entries[0].model_copy(update={"name": model.name})
    out = np.stack([model.run(x[i : i + 1], rr[i : i + 1]).reshape(-1) for i in range(8)])
    refs = {model.name: {"in0": x[:8], "in1": rr[:8], "out": out}}
    return Image(base.manifest, base.backend, [model], [entry], {}, [], refs)


def _beats(seconds: float) -> tuple[Any, list[Any]]:
    rec = DATA / "mitdb" / "100"
    src = open_source(f"wfdb:{rec}", seconds=seconds) if rec.with_suffix(".hea").exists() else \
        open_source(f"synthetic:clean?minutes={seconds / 60:g}")
    bz = StreamingBeatizer(src.fs)
    beats: list[Any] = []
    for ch in src.chunks(180):
        beats += bz.process(ch)
    return src, beats + bz.flush()


def _window_us(runners: dict[str, Any], beats: list[Any], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):  # interleaved: every runner sees the same machine load
        for name, fn in runners.items():
            c0 = time.thread_time()
            for b in beats:
                fn(b)
            times[name].append((time.thread_time() - c0) / len(beats))
    return {k: 1e6 * statistics.median(v) for k, v in times.items()}


def _loop_x(images: dict[str, Image], src: Any, rounds: int) -> dict[str, float]:
    chunks = list(src.chunks(180))
    signal_s = src.record().seconds
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, image in images.items():
            events: list[Any] = []
            rt = DeviceRuntime(image, fs=src.fs, config=RuntimeConfig(boot_kernels=False), sink=events.append)
            rt.boot()
            c0 = time.thread_time()
            for c in chunks:
                rt.feed(c)
            rt.finish()
            best[name] = max(best.get(name, 0.0), signal_s / (time.thread_time() - c0))
    return best


def run(workdir: Path, onnx_bundle: Path | None, seconds: float, rounds: int) -> dict[str, Any]:
    import executorch
    import torch
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    torch.set_num_threads(1)
    _unsafe_reset_threadpool(1)  # one thread, as every other runtime here
    src, beats = _beats(seconds)
    x = np.stack([b.window for b in beats]).astype(np.float32)
    rr = np.stack([b.rr for b in beats]).astype(np.float32)
    keys = workdir / "keys"
    bundle = read_bundle(workdir / "build" / "demo-edgetpu.kedge", keys)
    chain = load_image(bundle, LiteRtBackend("xnnpack"))
    whole = _whole_module(workdir / "host" / "base.pt")
    with torch.no_grad():
        torch_labels = whole(torch.from_numpy(x), torch.from_numpy(rr)).argmax(1).numpy()
    et: dict[str, EtModel] = {}
    for label, int8 in (("executorch fp32", False), ("executorch int8", True)):
        with contextlib.redirect_stdout(sys.stderr):
            et[label] = load_pte(export_pte(whole, x, rr, int8), label.replace(" ", "_"), chain)
    images = {"our chain (litert xnnpack)": chain, **{k: et_image(chain, m, x, rr) for k, m in et.items()}}
    if onnx_bundle is not None and onnx_bundle.exists():
        images["our chain (onnxruntime)"] = load_image(read_bundle(onnx_bundle, keys), OrtBackend())
    executors = {k: SegmentedExecutor(img, stats_every=0) for k, img in images.items()}
    runners = {k: (lambda b, ex=ex: ex.infer(b.window, b.rr)) for k, ex in executors.items()}
    agreement = {k: float(np.mean([ex.infer(b.window, b.rr).label == t for b, t in zip(beats, torch_labels, strict=True)]))
                 for k, ex in executors.items()}
    per_window = _window_us(runners, beats, rounds)
    loop = _loop_x(images, src, max(1, rounds // 2))
    rows = [{"runtime": k, "window_us": per_window[k], "loop_x_realtime": loop[k], "torch_label_agreement": agreement[k]}
            for k in images]
    ours = per_window["our chain (litert xnnpack)"]
    for r in rows:
        r["vs_our_chain"] = r["window_us"] / ours
    return {"executorch": executorch.__version__ if hasattr(executorch, "__version__") else "1.5.1",
            "torch": torch.__version__, "beats": len(beats), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--onnx-bundle", type=Path)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the result here (default: stdout)")
    args = ap.parse_args(argv)
    out = run(args.workdir, args.onnx_bundle, args.seconds, args.rounds)
    text = json.dumps(out, indent=2)
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, args.json)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
