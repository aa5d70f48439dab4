"""Whether a seed can learn at a base's sites on a patient's beats (G1's floor, checked before growing).

A base whose sites receive no gradient on the patient's beats (saturated at the device's int8 site ranges,
or frozen) would fail G1 for every seed after minutes of training: it is refused up front, with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GRADIENT_FLOOR = 1e-12  # G1's floor for a seed's gradient norm: below it a seed cannot learn


def site_gradients(base: Any, beats: Any, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Per seed site, on these beats: the norm of the loss's gradient at the site's output (what a seed
    placed there would learn from, each site clipped to its device range as the seeds grow), and the share
    of the site's activations beyond that range (saturated: the clip passes no gradient there)."""
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F  # noqa: N812

    x = torch.from_numpy(np.ascontiguousarray(beats.windows, np.float32))
    rr = torch.from_numpy(np.ascontiguousarray(beats.rr, np.float32))
    y = torch.from_numpy(np.asarray(beats.labels, np.int64))
    flags = [p.requires_grad for p in base.parameters()]
    for p in base.parameters():
        p.requires_grad_(False)
    was_training = base.training
    base.eval()
    taps: dict[str, torch.Tensor] = {}
    beyond: dict[str, float] = {}
    try:
        with torch.enable_grad():
            h = x
            for i, name in enumerate(base.config.site_names):
                h = base.blocks[i](h)
                if i == 0:
                    h.requires_grad_(True)  # the first block's inputs hold no gradient: start the graph here
                h.retain_grad()
                taps[name] = h
                lo, hi = ranges.get(name, (-math.inf, math.inf))
                beyond[name] = float(((h < lo) | (h > hi)).float().mean())
                if math.isfinite(lo) or math.isfinite(hi):
                    h = h.clamp(lo, hi)
            F.cross_entropy(base.head(h, rr), y).backward()
    finally:
        for p, f in zip(base.parameters(), flags, strict=True):
            p.requires_grad_(f)
        base.train(was_training)
    return {n: (0.0 if t.grad is None else float(t.grad.norm()), beyond[n]) for n, t in taps.items()}


def refuse_gradient_free_base(
    base: Any, beats: Any, ranges: dict[str, tuple[float, float]], checkpoint: Path, record: str
) -> None:
    """A base where no seed site receives a gradient on the patient's beats would fail G1 for every seed after
    minutes of training: refused up front, with the reason (saturated sites, or a frozen/saturated base)."""
    from kasmina_edge.contracts.errors import KasminaError

    grads = site_gradients(base, beats, ranges)
    if any(g >= GRADIENT_FLOOR for g, _ in grads.values()):
        return
    saturated = [f"{n} ({100 * b:.0f} % beyond)" for n, (_, b) in grads.items() if b > 0.5]
    why = (f"its sites are saturated: most activations lie beyond the device's int8 site ranges ({', '.join(saturated)})"
           if len(saturated) == len(grads) else
           "the base is frozen or saturated (its softmax is certain on every beat, or the units after the sites "
           "are dead)")  # fmt: skip
    raise KasminaError(
        f"{checkpoint}: no seed can learn on patient {record}: the loss passes no gradient to any seed site "
        f"(norms below {GRADIENT_FLOOR:g}); {why}. Train the base longer or with another --seed"
    )
