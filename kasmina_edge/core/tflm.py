"""TFLite Micro: measure each int8 model's arena, check it against the profile, compare with LiteRT.

The arena a model needs is what TFLite Micro's recording allocator reports ("Arena allocation total
N bytes", printed from C++ on stderr; the Python wheel has no getter). Models are loaded in a child
process (``_tflm_worker``) because an arena that is too small can crash the process instead of
raising. The reported size is then confirmed by loading the model with exactly that arena, again in
a child; if that fails the arena grows by steps until it loads.

Parity: TFLite Micro's kernels call TFLite's *reference* implementations
(``tensorflow/lite/kernels/internal/reference/``, github.com/tensorflow/tflite-micro), which LiteRT runs
with ``BUILTIN_REF``, not its optimized ones: outputs are compared with those, bit-exact expected except for ops
known to round differently (FULLY_CONNECTED), which may differ by at most 1 LSB; argmax identical
wherever the two best logits are more than 2 LSB apart (closer ones may swap within that 1 LSB).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kasmina_edge.core.build_errors import BuildError, ParityError, ProfileLimitError
from kasmina_edge.core.tflite_graph import read_graph, run_batched

_ALLOC = re.compile(r"Arena allocation total (\d+) bytes")
# ops whose TFLite Micro kernel may round differently from LiteRT's reference kernel (measured: the
# final FULLY_CONNECTED differed by 1 LSB on 0.1–0.7 % of windows)
DOCUMENTED_ROUNDING_OPS = frozenset({"FULLY_CONNECTED"})
ALIGN = 16
VERIFY_STEPS = (0, 256, 1024, 4096)


@dataclass(frozen=True)
class ArenaResult:
    name: str
    reported_bytes: int  # what the recording allocator said with a generous arena
    arena_bytes: int  # the smallest size tried that loaded (what firmware should reserve)
    verified: bool


@dataclass(frozen=True)
class MicroParity:
    name: str
    windows: int
    identical_fraction: float  # rows whose whole output equals LiteRT's reference kernels bit for bit
    max_lsb: int
    argmax_agreement: float | None  # for the logits artifact only
    documented_ops: tuple[str, ...]  # ops in the model allowed to differ by 1 LSB
    # argmax agreement on windows whose two best reference logits are more than 2 LSB apart: a 1-LSB
    # difference on each of two near-tied logits may legitimately swap them, nothing else may
    decisive_argmax_agreement: float | None = None

    @property
    def ok(self) -> bool:
        tolerance = 1 if self.documented_ops else 0
        agree = self.decisive_argmax_agreement is None or self.decisive_argmax_agreement == 1.0
        return self.max_lsb <= tolerance and agree


def _round_up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _run_worker(jobs: list[dict[str, object]], tmp: Path, timeout: float = 300.0) -> tuple[int, str, str]:
    job_file = tmp / f"jobs-{len(list(tmp.iterdir()))}.json"
    job_file.write_text(json.dumps(jobs), encoding="utf-8")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "kasmina_edge.core._tflm_worker", str(job_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"TFLite Micro check timed out after {timeout:.0f} s") from exc
    return proc.returncode, proc.stdout, proc.stderr


def _reported(stderr: str) -> dict[str, int]:
    """Arena totals by job name from the worker's stderr (sections start with ``@@begin NAME``)."""
    found: dict[str, int] = {}
    current: str | None = None
    for line in stderr.splitlines():
        if line.startswith("@@begin "):
            current = line[len("@@begin ") :].strip()
        elif current is not None and current not in found:
            m = _ALLOC.search(line)
            if m:
                found[current] = int(m.group(1))
    return found


def run_micro(
    models: Mapping[str, bytes],
    inputs: Mapping[str, Sequence[np.ndarray]] | None = None,
    arenas: Mapping[str, int] | None = None,
) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Load (and run) each model in one child process; return reported arena totals and outputs.

    Without ``arenas`` each model gets a generous arena (10× its size, at least 64 KiB).
    """
    inputs = inputs or {}
    with tempfile.TemporaryDirectory(prefix="kasmina-tflm-") as tmpdir:
        tmp = Path(tmpdir)
        jobs: list[dict[str, object]] = []
        for name, data in models.items():
            model_path = tmp / f"{name}.tflite"
            model_path.write_bytes(data)
            job: dict[str, object] = {
                "name": name,
                "model": str(model_path),
                "arena": int((arenas or {}).get(name, max(10 * len(data), 65536))),
            }
            if name in inputs:
                in_path = tmp / f"{name}.in.npz"
                np.savez(in_path, **{f"in{i}": np.asarray(a) for i, a in enumerate(inputs[name])})  # type: ignore[arg-type]
                job["inputs"] = str(in_path)
                job["outputs"] = str(tmp / f"{name}.out.npy")
            jobs.append(job)
        rc, _out, err = _run_worker(jobs, tmp)
        if rc != 0:
            raise BuildError(
                f"TFLite Micro could not load or run the models (exit {rc}): {err.strip()[-300:]}"
            )
        outputs = {str(j["name"]): np.load(str(j["outputs"])) for j in jobs if "outputs" in j}
        return _reported(err), outputs


def _loads_with(name: str, data: bytes, arena: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="kasmina-tflm-") as tmpdir:
        tmp = Path(tmpdir)
        path = tmp / f"{name}.tflite"
        path.write_bytes(data)
        rc, _out, err = _run_worker([{"name": name, "model": str(path), "arena": arena}], tmp, timeout=60)
        return rc == 0 and name in _reported(err)


def measure_arenas(
    models: Mapping[str, bytes], reported: Mapping[str, int] | None = None
) -> dict[str, ArenaResult]:
    """Smallest confirmed arena per model: the reported total, grown by steps until a child loads it."""
    reported = dict(reported) if reported is not None else run_micro(models)[0]
    missing = [n for n in models if n not in reported]
    if missing:
        raise BuildError(f"{missing[0]}: TFLite Micro reported no arena allocation")
    exact = {n: _round_up(reported[n]) for n in models}
    try:  # the common case: every model loads with exactly its reported arena, one child for all
        run_micro(models, arenas=exact)
        return {n: ArenaResult(n, reported[n], exact[n], True) for n in models}
    except BuildError:
        pass
    results: dict[str, ArenaResult] = {}
    for name, data in models.items():
        base = exact[name]
        for step in VERIFY_STEPS:
            if _loads_with(name, data, base + step):
                results[name] = ArenaResult(name, reported[name], base + step, True)
                break
        else:
            results[name] = ArenaResult(name, reported[name], max(10 * len(data), 65536), False)
    return results


def compare_with_reference(
    name: str, data: bytes, inputs: Sequence[np.ndarray], micro_out: np.ndarray, *, logits: bool
) -> MicroParity:
    """TFLite Micro's output against LiteRT's reference kernels on the same int8 inputs."""
    ref = run_batched(data, list(inputs), reference=True)[0]
    if ref.shape != micro_out.shape:
        raise ParityError(f"{name}: TFLite Micro output shape {micro_out.shape} != LiteRT {ref.shape}")
    diff = np.abs(ref.astype(np.int32) - micro_out.astype(np.int32)).reshape(ref.shape[0], -1)
    documented = tuple(sorted({op for op in read_graph(data).op_names() if op in DOCUMENTED_ROUNDING_OPS}))
    agree = decisive = None
    if logits:
        r2 = ref.reshape(ref.shape[0], -1).astype(np.int32)
        m2 = micro_out.reshape(ref.shape[0], -1).astype(np.int32)
        same = r2.argmax(1) == m2.argmax(1)
        agree = float(same.mean())
        top2 = np.sort(r2, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 2
        decisive = float(same[clear].mean()) if clear.any() else 1.0
    return MicroParity(
        name=name,
        windows=int(ref.shape[0]),
        identical_fraction=float((diff.max(axis=1) == 0).mean()),
        max_lsb=int(diff.max()) if diff.size else 0,
        argmax_agreement=agree,
        documented_ops=documented,
        decisive_argmax_agreement=decisive,
    )


@dataclass(frozen=True)
class MemoryCheck:
    flash_bytes: int  # all artifacts stored on the device
    flash_limit: int
    sram_bytes: int  # arenas of the base segments + the largest kernel arena of each site
    sram_limit: int


def check_memory(
    artifact_bytes: Mapping[str, int],
    arenas: Mapping[str, int],
    kernel_sites: Mapping[str, int],
    *,
    flash_limit: int,
    sram_limit: int,
    profile: str,
) -> MemoryCheck:
    """Raise :class:`ProfileLimitError` naming the artifact and the limit when the build does not fit.

    Every artifact stays in flash; in SRAM every base segment keeps its own arena (they are all
    loaded) and each site one kernel slot, sized for the largest kernel that can sit there.
    """
    flash = sum(artifact_bytes.values())
    segments = {n: a for n, a in arenas.items() if n not in kernel_sites}
    per_site: dict[int, int] = {}
    for name, site in kernel_sites.items():
        per_site[site] = max(per_site.get(site, 0), arenas[name])
    sram = sum(segments.values()) + sum(per_site.values())
    if flash_limit and flash > flash_limit:
        biggest = max(artifact_bytes, key=lambda n: artifact_bytes[n])
        raise ProfileLimitError(
            f"model too big for {profile}: artifacts need {flash:,} B of flash, the profile has {flash_limit:,} B "
            f"(largest artifact: {biggest}, {artifact_bytes[biggest]:,} B)"
        )
    if sram_limit and sram > sram_limit:
        biggest = max(arenas, key=lambda n: arenas[n])
        raise ProfileLimitError(
            f"model too big for {profile}: TFLite Micro arenas need {sram:,} B of SRAM, the profile has "
            f"{sram_limit:,} B (largest arena: {biggest}, {arenas[biggest]:,} B)"
        )
    return MemoryCheck(flash, flash_limit, sram, sram_limit)
