"""Parity at build time: every artifact against its reference, with stated bounds.

* Chain vs torch: the whole exported chain (int8 or 4-bit) against the float torch model on held-out
  windows — argmax agreement at least 99 %, and the 99th percentile of the logit error within a
  bound stated relative to the float logits' spread (quantization error scales with the range).
* Reference vectors: a few windows' inputs and outputs per artifact, stored in the bundle, so the
  device (or CI) can check that the artifact it loaded computes what the build computed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kasmina_edge.compile.errors import ParityError

MIN_ARGMAX_AGREEMENT = 0.99
# p99 |logit error| allowed, as a fraction of the float logits' p1..p99 spread
LOGIT_ERROR_FRACTION = 0.10


@dataclass(frozen=True)
class LogitParity:
    windows: int
    argmax_agreement: float
    max_abs_error: float
    p99_abs_error: float
    bound: float  # what p99_abs_error must stay within
    min_agreement: float = MIN_ARGMAX_AGREEMENT

    @property
    def ok(self) -> bool:
        return self.argmax_agreement >= self.min_agreement and self.p99_abs_error <= self.bound

    def to_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "ok": self.ok}


def logit_bound(reference: np.ndarray, fraction: float = LOGIT_ERROR_FRACTION) -> float:
    lo, hi = np.percentile(reference, [1, 99])
    return float(fraction * max(hi - lo, 1e-6))


def compare_logits(
    reference: np.ndarray,
    got: np.ndarray,
    *,
    bound: float | None = None,
    clip: tuple[float, float] | None = None,
) -> LogitParity:
    """Argmax agreement and logit error. With ``clip`` (the logit grid's ends) the reference is
    clipped there first: the artifact outputs logits clipped to the band where classes are decided."""
    if reference.shape != got.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {got.shape}")
    clipped = reference if clip is None else np.clip(reference, clip[0], clip[1])
    err = np.abs(clipped.astype(np.float64) - got.astype(np.float64))
    return LogitParity(
        windows=int(reference.shape[0]),
        argmax_agreement=float((reference.argmax(1) == got.argmax(1)).mean()) if reference.size else 1.0,
        max_abs_error=float(err.max()) if err.size else 0.0,
        p99_abs_error=float(np.percentile(err.max(axis=1), 99)) if err.size else 0.0,
        bound=logit_bound(clipped) if bound is None else bound,
    )


def require_parity(parity: LogitParity, what: str) -> None:
    if parity.argmax_agreement < parity.min_agreement:
        raise ParityError(
            f"{what}: argmax agrees with torch on {100 * parity.argmax_agreement:.2f} % of {parity.windows} "
            f"held-out windows, the limit is {100 * parity.min_agreement:.0f} % (--allow-parity-miss builds anyway "
            "and records it)"
        )
    if parity.p99_abs_error > parity.bound:
        raise ParityError(
            f"{what}: p99 logit error {parity.p99_abs_error:.4f} exceeds the bound {parity.bound:.4f} "
            "(--allow-parity-miss builds anyway and records it)"
        )


def reference_vectors(
    trace: Mapping[str, Sequence[Sequence[np.ndarray]]], rows: int = 8
) -> dict[str, dict[str, np.ndarray]]:
    """Per artifact: ``in0`` (``in1``) and ``out`` arrays of the first ``rows`` traced rows."""
    vectors: dict[str, dict[str, np.ndarray]] = {}
    for name, calls in trace.items():
        picked = list(calls)[:rows]
        if not picked:
            continue
        n_in = len(picked[0]) - 1
        arrays = {f"in{i}": np.concatenate([c[i] for c in picked], axis=0) for i in range(n_in)}
        arrays["out"] = np.concatenate([c[-1] for c in picked], axis=0)
        vectors[name] = arrays
    return vectors


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buf.getvalue()


def load_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def macro_f1(truth: np.ndarray, logits: np.ndarray, n_classes: int = 5, *, min_support: int = 1) -> float:
    """Macro-F1 over the classes with at least ``min_support`` beats in ``truth`` (with 1: the host's
    definition, so figures compare)."""
    from kasmina_edge.host.train import class_metrics

    m = class_metrics(np.asarray(truth), np.asarray(logits).argmax(1), n_classes)
    keep = m.support >= min_support
    return float(np.mean(m.f1[keep])) if keep.any() else float("nan")
