"""Loading a bundle's fused pieces (``base_to_site{i}``, ``base_from_site{i}``, kind "whole"): by site, checked
against the segments they stand for (shapes and grids at load, numbers at boot), refused when they do not fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kasmina_edge.compile.fuse import fuse_pieces
from kasmina_edge.contracts.bundle import read_bundle, write_bundle
from kasmina_edge.runtime.backends import LiteRtBackend
from kasmina_edge.runtime.engine import DeviceRuntime
from kasmina_edge.runtime.image import ImageError, load_image


def _with_pieces(bundles: Path, keys: Path, out: Path, rename: dict[str, str] | None = None) -> Path:
    """The linux-arm fixture bundle re-signed with its fused pieces (``rename``: a piece filed under another name)."""
    b = read_bundle(bundles / "linux-arm-v1.kedge", keys)
    pieces = fuse_pieces([b.artifact_bytes(n) for n in b.manifest.chain.segments])  # type: ignore[union-attr]
    files = {n: b.read(n) for n in b.files if n not in ("manifest.json", "signature.json")}
    manifest: dict[str, Any] = b.manifest.model_dump(mode="json", by_alias=True)
    for name, data in pieces.items():
        name = (rename or {}).get(name, name)
        files[f"artifacts/{name}.tflite"] = data
        manifest["artifacts"].append({"name": name, "kind": "whole", "format": "tflite-int8",
                                      "file": f"artifacts/{name}.tflite", "sha256": "0" * 64, "bytes": 0})
    write_bundle(out, manifest, files, keys=keys)
    return out


def test_a_bundles_pieces_load_by_site_and_boot(bundles: Path, keys: Path, tmp_path: Path) -> None:
    path = _with_pieces(bundles, keys, tmp_path / "pieces.kedge")
    image = load_image(read_bundle(path, keys), LiteRtBackend("builtin"))
    assert set(image.prefixes) == {1} and set(image.suffixes) == {0}
    checks = {c.artifact: c for c in DeviceRuntime(image).boot()}
    assert checks["base_to_site1"].passed and checks["base_from_site0"].passed


def test_a_piece_that_does_not_fit_its_segments_is_refused(bundles: Path, keys: Path, tmp_path: Path) -> None:
    # the prefix to site 1 filed as the suffix from site 0: it takes the window, not site 0's tensor
    path = _with_pieces(bundles, keys, tmp_path / "swapped.kedge",
                        {"base_to_site1": "base_from_site0", "base_from_site0": "base_to_site1"})
    with pytest.raises(ImageError, match="base_(from|to)_site.*differ from segments"):
        load_image(read_bundle(path, keys), LiteRtBackend("builtin"))
