"""The fused base (artifact ``base_whole``): the segments stitched into one model compute what the chain
computes (TFLite bit for bit, ONNX on the same logits); a built bundle carries it signed, the runtime boots it
(reference vectors), runs it while no kernel is live with the chain's very beat classes, and never while one is;
where it would break a target's rules it is left out with the reason in the manifest.

The bundle is built once by ``kasmina_edge.compile.pipeline.build`` (the host's tiny model, one seed) and cached
in pytest's cache, keyed by the sources that shape it (compile, core, host, contracts, this file).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kasmina_edge.compile.chain import ChainLayout, onnx_chain, tflite_chain
from kasmina_edge.compile.fuse import WHOLE_BASE, fuse_onnx, fuse_tflite
from kasmina_edge.compile.report import BuildReport
from kasmina_edge.compile.stages.fused_base import keep_target_rules
from kasmina_edge.core.build_errors import ProfileLimitError
from kasmina_edge.core.tflite_graph import read_graph, run_batched

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _segments(trained: Any) -> tuple[str, ...]:
    return tuple(s.name for s in trained.specs if s.kind == "segment")


def _quantized_inputs(whole: bytes, x: np.ndarray, rr: np.ndarray) -> list[np.ndarray]:
    from kasmina_edge.compile.quantize import QuantGrid

    return [
        QuantGrid(t.scales[0], t.zero_points[0]).quantize(a)
        for t, a in zip(read_graph(whole).input_tensors(), (x, rr), strict=True)
    ]


@pytest.mark.parametrize("simplify", [False, True])
def test_fused_tflite_computes_the_chain_bit_for_bit(
    trained: Any, tflite_artifacts: dict[str, bytes], simplify: bool
) -> None:
    """Stitched as exported, or with the layout round trips at the cuts dropped (TRANSPOSE→RESHAPE at a
    segment's end, RESHAPE→TRANSPOSE back at the next one's start: four ops per cut)."""
    segments = _segments(trained)
    whole = fuse_tflite([tflite_artifacts[s] for s in segments], simplify=simplify)
    g, parts = read_graph(whole), [read_graph(tflite_artifacts[s]) for s in segments]
    dropped = 4 * (len(segments) - 1) if simplify else 0
    assert len(g.ops) == sum(len(p.ops) for p in parts) - dropped  # nothing added, nothing else lost
    first, last = parts[0].input_tensors()[0], parts[-1]
    for got, want in (
        (g.input_tensors()[0], first),
        (g.input_tensors()[1], last.input_tensors()[1]),
        (g.output_tensors()[0], last.output_tensors()[0]),
    ):
        assert (got.shape, got.scales, got.zero_points) == (want.shape, want.scales, want.zero_points)
    x, rr = trained.x_test[:200], trained.rr_test[:200]
    ins = _quantized_inputs(whole, x, rr)
    for reference in (False, True):  # LiteRT's optimised kernels and the reference ones TFLite Micro mirrors
        chain = tflite_chain(
            tflite_artifacts, ChainLayout(segments, {}), x, rr, return_int8=True, reference=reference
        )
        np.testing.assert_array_equal(
            run_batched(whole, ins, reference=reference)[0].reshape(chain.shape), chain
        )


def test_fused_onnx_gives_the_chain_logits(trained: Any, onnx_artifacts: dict[str, bytes]) -> None:
    from kasmina_edge.compile.export_onnx import run_onnx

    segments = _segments(trained)
    names = [next(s.input_names for s in trained.specs if s.name == n) for n in segments]
    whole = fuse_onnx([onnx_artifacts[s] for s in segments], names)
    x, rr = trained.x_test[:200], trained.rr_test[:200]
    chain = onnx_chain(onnx_artifacts, ChainLayout(segments, {}), x, rr)
    got = run_onnx(whole, [x, rr])
    np.testing.assert_allclose(got, chain, rtol=0, atol=1e-5)
    assert np.array_equal(got.argmax(1), chain.argmax(1))


# ------------------------------------------------------------------ the target's rules


@dataclasses.dataclass
class _Arts:
    built: dict[str, Any]


def _report() -> BuildReport:
    r = BuildReport(target="cortex-m", profile="p", bits=8, format="tflite-int8")
    r.fused_base = {"artifact": WHOLE_BASE, "included": True, "reason": "fused"}
    r.notes.append(f"fused base {WHOLE_BASE}: carried: fused")
    return r


def test_a_fused_base_that_overflows_the_profile_is_left_out_with_the_reason() -> None:
    report, arts = _report(), _Arts({"segment_0": object(), WHOLE_BASE: object()})
    calls: list[bool] = []

    def check() -> dict[str, bytes]:
        calls.append(WHOLE_BASE in arts.built)
        report.memory["arenas"] = dict.fromkeys(arts.built, 1)
        if WHOLE_BASE in arts.built:
            raise ProfileLimitError("model too big for p: artifacts need 9 B of flash, the profile has 8 B")
        return {"firmware/model_data.cc": b"x"}

    files = keep_target_rules(report, arts, check)  # type: ignore[arg-type]
    assert calls == [True, False] and files == {"firmware/model_data.cc": b"x"}
    assert WHOLE_BASE not in arts.built and report.memory["arenas"] == {"segment_0": 1}
    assert report.fused_base["included"] is False and "9 B of flash" in report.fused_base["reason"]
    assert not any(n.startswith(f"fused base {WHOLE_BASE}: carried") for n in report.notes)


def test_a_fused_base_with_ops_off_the_edge_tpu_is_left_out_and_kept_when_it_maps() -> None:
    def checker(report: BuildReport, arts: _Arts, cpu_ops: int) -> Any:
        def check() -> dict[str, bytes]:
            models = [{"name": n, "ops_cpu": cpu_ops if n == WHOLE_BASE else 0} for n in arts.built]
            report.target_mapping = {"models": models, "fits_cache": True}
            return {}

        return check

    for cpu_ops, kept in ((2, False), (0, True)):
        report, arts = _report(), _Arts({"segment_0": object(), WHOLE_BASE: object()})
        keep_target_rules(report, arts, checker(report, arts, cpu_ops))  # type: ignore[arg-type]
        assert (WHOLE_BASE in arts.built) is kept and report.fused_base["included"] is kept
        if not kept:
            assert "2 of its ops would run on the CPU" in report.fused_base["reason"]
            assert [m["name"] for m in report.target_mapping["models"]] == ["segment_0"]


# ------------------------------------------------------------------ a built bundle


def _cache_key() -> str:
    h = hashlib.sha256()
    for folder in ("compile", "core", "host", "contracts"):
        for path in sorted((REPO / "kasmina_edge" / folder).rglob("*.py")):
            h.update(path.read_bytes())
    for path in (HERE / "host_files.py", Path(__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


TARGETS = {"linux-arm": "tflite-int8", "x86": "onnx-qdq"}  # LiteRT and ONNX Runtime


def _build(folder: Path, target: str) -> Path:
    """A bundle of the host's tiny model with one seed for ``target`` (synthetic data only), cached."""
    bundle, keys = folder / f"{target}.kedge", folder / "keys"
    if bundle.exists():
        return bundle
    from host_files import write_checkpoint, write_library

    from kasmina_edge.compile.pipeline import BuildRequest, build
    from kasmina_edge.compile.stages import windows
    from kasmina_edge.contracts.bundle import init_keys

    if not (folder / "base.pt").exists():
        write_checkpoint(folder / "base.pt", train=True)
        write_library(folder / "seeds")
    if not (keys / "bundle-signing.key").exists():
        init_keys(keys)
    mp = pytest.MonkeyPatch()
    mp.setattr(windows, "default_record100", lambda: None)  # the same bundle with or without MIT-BIH here
    req = BuildRequest(checkpoint=folder / "base.pt", seeds=folder / "seeds", keys=keys, target=target,
                       out=folder / f"{target}.tmp", heldout_patients=4, parity_windows=600, qat_steps=20)  # fmt: skip
    try:
        build(req)
    finally:
        mp.undo()
    (folder / f"{target}.tmp").replace(bundle)
    return bundle


@pytest.fixture(scope="module", params=sorted(TARGETS))
def built(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(bundle, keys folder) per target: LiteRT's int8 TFLite (linux-arm), ONNX QDQ (x86)."""
    folder = Path(request.config.cache.mkdir(f"kasmina-fused-base-{_cache_key()}"))
    return _build(folder, request.param), folder / "keys"


def _backend(path: Path) -> Any:
    from kasmina_edge.runtime.backends import LiteRtBackend, OrtBackend

    return OrtBackend() if path.stem == "x86" else LiteRtBackend()


def _windows(n: int) -> tuple[np.ndarray, np.ndarray]:
    from kasmina_edge.ecg.dataset import synthetic_patients
    from kasmina_edge.host.data import beats

    ds = beats(synthetic_patients(2, 1.0, seed=31))
    return ds.windows[:n], ds.rr[:n]


class _Counted:
    """A loaded model whose invokes are counted."""

    def __init__(self, model: Any) -> None:
        self._model, self.calls = model, 0
        self.name, self.inputs, self.outputs = model.name, model.inputs, model.outputs

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self._model.run(*inputs)  # type: ignore[no-any-return]


def test_a_built_bundle_carries_the_fused_base_signed_with_its_reference_vectors(
    built: tuple[Path, Path],
) -> None:
    from kasmina_edge.contracts.bundle import read_bundle

    path, keys = built
    b = read_bundle(path, keys)  # signature and every hash
    entry = b.manifest.artifact(WHOLE_BASE)
    assert entry.kind == "whole" and entry.format == TARGETS[path.stem] and entry.reference is not None
    assert (b.manifest.model_extra or {})["fused_base"]["included"] is True
    segs = [b.manifest.artifact(n) for n in b.manifest.chain.segments]  # type: ignore[union-attr]
    for got, want in ((entry.input_specs[0], segs[0].input_specs[0]), (entry.input_specs[1], segs[-1].input_specs[1]),
                      (entry.output_specs[0], segs[-1].output_specs[0])):  # fmt: skip
        assert (got.shape, got.dtype, got.scale, got.zero_point) == (want.shape, want.dtype, want.scale, want.zero_point)
    ref, chain_ref = b.reference_vectors(WHOLE_BASE), b.reference_vectors(segs[-1].name)
    rows = ref["out"].shape[0]  # the segments' vectors go on with the chain's kernel live (ONNX: a batch each)
    assert rows == 8 and ref["in0"].shape[0] == rows
    np.testing.assert_array_equal(ref["in1"], chain_ref["in1"][:rows])
    np.testing.assert_allclose(ref["out"], chain_ref["out"][:rows], rtol=0, atol=1e-6)  # the chain's logits


def test_the_runtime_boots_the_fused_base_and_runs_it_only_with_no_kernel_live(
    built: tuple[Path, Path],
) -> None:
    _boot_and_run(*built, _backend(built[0]))


def _boot_and_run(path: Path, keys: Path, backend: Any) -> None:
    """Boot ``path`` on ``backend`` (the fused base against its reference vectors), then: no kernel live, the
    fused base answers every window with the chain's logits; a kernel live, the chain answers as before."""
    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.runtime.engine import DeviceRuntime
    from kasmina_edge.runtime.executor import SegmentedExecutor, SlotConfig
    from kasmina_edge.runtime.image import load_image

    image = load_image(read_bundle(path, keys), backend)
    assert image.whole is not None
    checks = DeviceRuntime(image).boot()
    assert any(c.artifact == WHOLE_BASE and c.passed for c in checks)
    whole = _Counted(image.whole)
    fused = SegmentedExecutor(dataclasses.replace(image, whole=whole), stats_every=0)  # type: ignore[arg-type]
    chain = SegmentedExecutor(dataclasses.replace(image, whole=None), stats_every=0)
    x, rr = _windows(300)
    got = [fused.infer(x[i], rr[i]) for i in range(x.shape[0])]
    want = [chain.infer(x[i], rr[i]) for i in range(x.shape[0])]
    assert whole.calls == x.shape[0]
    assert [r.label for r in got] == [r.label for r in want]  # the chain's beat classes, window for window
    np.testing.assert_array_equal(np.stack([r.logits for r in got]), np.stack([r.logits for r in want]))
    kernel = next(iter(image.kernels.values()))
    for ex in (fused, chain):
        ex.set_slot(kernel.site, SlotConfig(candidate=kernel, alpha=1.0))
    live = [(fused.infer(x[i], rr[i]).logits, chain.infer(x[i], rr[i]).logits) for i in range(50)]
    assert whole.calls == x.shape[0]  # a kernel live: the chain, never the fused base
    for a, c in live:
        np.testing.assert_array_equal(a, c)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cortex-m", "edgetpu"])
def test_rule_checked_targets_carry_the_fused_base_and_run_it(request: pytest.FixtureRequest, target: str) -> None:
    """Cortex-M: in the flash and SRAM budget, its TFLite Micro arena measured and its parity with LiteRT's
    reference kernels checked, run by TFLite Micro; Edge TPU: every op mapped, the parameters in the cache."""
    import json

    from kasmina_edge.contracts.bundle import read_bundle
    from kasmina_edge.runtime.backends import LiteRtBackend, MicroBackend

    folder = Path(request.config.cache.mkdir(f"kasmina-fused-base-{_cache_key()}"))
    path, keys = _build(folder, target), folder / "keys"
    b = read_bundle(path, keys)
    assert b.manifest.artifact(WHOLE_BASE).kind == "whole"
    report = json.loads(b.files["report.json"])
    if target == "cortex-m":
        assert report["memory"]["arenas"][WHOLE_BASE] > 0 and report["memory"]["micro_parity"][WHOLE_BASE]["ok"]
        assert report["memory"]["flash_bytes"] <= report["memory"]["flash_limit"]
        assert report["memory"]["sram_bytes"] <= report["memory"]["sram_limit"]
        assert b"base_whole" in b.files["firmware/model_data.cc"]
    else:
        fused = next(m for m in report["target_mapping"]["models"] if m["name"] == WHOLE_BASE)
        assert fused["ops_cpu"] == 0 and report["target_mapping"]["fits_cache"]
    _boot_and_run(path, keys, MicroBackend() if target == "cortex-m" else LiteRtBackend())
