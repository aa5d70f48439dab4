"""Whether seed kernels fit a base: one rule wherever a kernel meets the base it is meant for.

A kernel-only bundle (``kind = "kernels"``, e.g. one patient's seed) adds kernels to a base already on a
device. It names that base by the SHA-256 of the base's checkpoint and is built for one target; each kernel
sits at one seed site and hands int8 values on in that site's grid. It fits a base (full) bundle when the
checkpoint hash and the target are the same, every kernel's site is one the base has, and every kernel's
input and output grid is the site's (raw int8 values on another grid would mean other numbers).

The device's kernel store checks it on flash, OTA and boot, the runtime when it adds kernels to a booted
image, and the host before it grows a patient's seeds against a base bundle (``morph --patient
--base-bundle``): each gets the same answer in the same words.
"""

from __future__ import annotations

from collections.abc import Iterable

from kasmina_edge.contracts.manifest import ArtifactEntry, BundleManifest

# Two grids are the same when their scales agree this closely: both come from one calibration and
# travel as JSON floats, so only another build of the base (another calibration) differs.
GRID_RTOL = 1e-9


def misfit(
    base: BundleManifest,
    *,
    checkpoint_sha256: str,
    target: str,
    kernels: Iterable[ArtifactEntry] = (),
    device: str = "the device",
) -> str | None:
    """Why kernels grown from ``checkpoint_sha256`` for ``target`` (``kernels``: their manifest entries,
    when built) cannot go on ``base``, in one line; None when they fit. ``device`` names where ``base`` is."""
    if base.kind != "full":
        return f"{device} holds a {base.kind} bundle, not a base (full) bundle"
    if target != base.target:
        return f"kernel bundle is built for target {target}; {device} runs {base.target}"
    if checkpoint_sha256 != base.base_checkpoint:
        return (
            f"kernel bundle is for base {checkpoint_sha256[:12]}, {device} runs base "
            f"{base.base_checkpoint[:12]} (grow the seed from that base's checkpoint)"
        )
    grids = {site.index: site.grid for site in base.sites}
    for kernel in kernels:
        if kernel.site is None or (grids and kernel.site not in grids):
            return f"kernel {kernel.name} sits at site {kernel.site}; the base has sites {sorted(grids)}"
        want = grids.get(kernel.site) or {}
        scale = float(want["scale"]) if want.get("scale") else None
        for spec in (*kernel.input_specs[:1], *kernel.output_specs[:1]):
            if scale is None or not spec.scale:
                continue  # a float edge (ONNX QDQ) or a base built without site grids: nothing to compare
            zero_point = (spec.zero_point or [0])[0]
            if abs(spec.scale[0] - scale) > GRID_RTOL * abs(scale) or zero_point != int(want.get("zero_point", 0)):
                return (
                    f"kernel {kernel.name} at site {kernel.site}: int8 grid scale={spec.scale[0]:.6g} differs "
                    f"from the base's site grid {scale:.6g} (built against another build of this base)"
                )
    return None


def kernel_bundle_misfit(kernels: BundleManifest, base: BundleManifest, *, device: str = "the device") -> str | None:
    """:func:`misfit` for a built bundle: it must be kernels only, then fit ``base`` by the rule above."""
    if kernels.kind != "kernels":
        return f"bundle {kernels.bundle_id} is a {kernels.kind} image, not kernels only"
    return misfit(
        base,
        checkpoint_sha256=kernels.base_checkpoint,
        target=kernels.target,
        kernels=kernels.kernels(),
        device=device,
    )
