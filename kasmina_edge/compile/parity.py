"""Parity at build time: every artifact against its reference, with stated bounds.

* Chain vs torch: the whole exported chain (int8 or 4-bit) against the float torch model on held-out
  windows — argmax agreement at least 99 %, and the 99th percentile of the logit error within a
  bound stated relative to the float logits' spread (quantization error scales with the range).
  A missed bound is a warning recorded in the bundle by default, an error in strict (release) builds.
* Reference vectors: a few windows' inputs and outputs per artifact, stored in the bundle, so the
  device (or CI) can check that the artifact it loaded computes what the build computed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kasmina_edge.core.build_errors import ParityError

MIN_ARGMAX_AGREEMENT = 0.99  # read at call time, so a test can plant a miss by raising it
# p99 |logit error| allowed, as a fraction of the float logits' p1..p99 spread
LOGIT_ERROR_FRACTION = 0.10
INT8_STEPS = 255


@dataclass(frozen=True)
class LogitParity:
    windows: int
    argmax_agreement: float
    max_abs_error: float
    p99_abs_error: float
    bound: float  # what p99_abs_error must stay within
    min_agreement: float = MIN_ARGMAX_AGREEMENT
    # windows whose argmax differs although torch's own top-2 margin is below one int8 step of the
    # logit grid: near-ties no int8 output can resolve (only counted when the grid is known)
    near_ties: int = 0

    @property
    def agreement_ok(self) -> bool:
        return self.argmax_agreement >= self.min_agreement

    @property
    def error_ok(self) -> bool:
        return self.p99_abs_error <= self.bound

    @property
    def ok(self) -> bool:
        return self.agreement_ok and self.error_ok

    @property
    def disagreeing(self) -> int:
        return round((1.0 - self.argmax_agreement) * self.windows)

    def summary(self) -> str:
        """The bounds this comparison missed, each with its figure (empty when none)."""
        parts: list[str] = []
        if not self.agreement_ok:
            ties = (
                f", {self.near_ties} of them float near-ties under one int8 logit step"
                if self.near_ties
                else ""
            )
            parts.append(
                f"argmax agrees with torch on {_percent(self.argmax_agreement, self.min_agreement)} % of "
                f"{self.windows} windows ({self.disagreeing} differ{ties}), the bound is "
                f"{100 * self.min_agreement:g} %"
            )
        if not self.error_ok:
            parts.append(f"p99 logit error {self.p99_abs_error:.4f} exceeds the bound {self.bound:.4f}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "ok": self.ok}


def _percent(value: float, bound: float) -> str:
    """``value`` as a percentage with enough decimals not to print as the bound it missed
    (98.996 % is not "99.00 %" when the bound is 99 %)."""
    for decimals in (2, 3, 4):
        text = f"{100 * value:.{decimals}f}"
        if (float(text) < 100 * bound) == (value < bound):
            return text
    return text


def logit_bound(reference: np.ndarray, fraction: float = LOGIT_ERROR_FRACTION) -> float:
    lo, hi = np.percentile(reference, [1, 99])
    return float(fraction * max(hi - lo, 1e-6))


def compare_logits(
    reference: np.ndarray,
    got: np.ndarray,
    *,
    bound: float | None = None,
    clip: tuple[float, float] | None = None,
    min_agreement: float | None = None,
) -> LogitParity:
    """Argmax agreement and logit error. With ``clip`` (the logit grid's ends) the reference is
    clipped there first: the artifact outputs logits clipped to the band where classes are decided."""
    if reference.shape != got.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {got.shape}")
    clipped = reference if clip is None else np.clip(reference, clip[0], clip[1])
    err = np.abs(clipped.astype(np.float64) - got.astype(np.float64))
    differ = reference.argmax(1) != got.argmax(1) if reference.size else np.zeros(0, bool)
    near_ties = 0
    if clip is not None and reference.size and reference.shape[1] > 1:
        top2 = np.sort(reference, axis=1)[:, -2:]
        step = (clip[1] - clip[0]) / INT8_STEPS
        near_ties = int((differ & (top2[:, 1] - top2[:, 0] < step)).sum())
    return LogitParity(
        windows=int(reference.shape[0]),
        argmax_agreement=float(1.0 - differ.mean()) if reference.size else 1.0,
        max_abs_error=float(err.max()) if err.size else 0.0,
        p99_abs_error=float(np.percentile(err.max(axis=1), 99)) if err.size else 0.0,
        bound=logit_bound(clipped) if bound is None else bound,
        min_agreement=MIN_ARGMAX_AGREEMENT if min_agreement is None else min_agreement,
        near_ties=near_ties,
    )


def require_parity(parity: LogitParity, what: str) -> None:
    """Strict builds (``build --strict``, release): a missed bound is an error, one line."""
    if not parity.ok:
        raise ParityError(
            f"{what}: {parity.summary()}; --strict refuses a missed parity bound "
            "(without --strict the bundle is written with a warning)"
        )


def parity_warning(parity: LogitParity, what: str) -> str:
    """Default builds: the line that warns of a missed bound the bundle was written with anyway."""
    return (
        f"{what}: {parity.summary()}; bundle written, the miss recorded in its manifest (--strict refuses it)"
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


def macro_f1(truth: np.ndarray, logits: np.ndarray, n_classes: int = 5, *, min_support: int = 1) -> float:
    """Macro-F1 over the classes with at least ``min_support`` beats in ``truth`` (with 1: the host's
    definition, so figures compare)."""
    from kasmina_edge.host.train import class_metrics

    m = class_metrics(np.asarray(truth), np.asarray(logits).argmax(1), n_classes)
    keep = m.support >= min_support
    return float(np.mean(m.f1[keep])) if keep.any() else float("nan")
