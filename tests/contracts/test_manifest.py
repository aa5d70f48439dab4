"""Item 6: names from a bundle that become paths on the device are plain names, checked when the manifest is read."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import pytest

from kasmina_edge.contracts.bundle import BundleError, load_private_key, read_bundle
from kasmina_edge.contracts.manifest import ManifestError, parse_manifest


def _manifest(bundles: Path, keys: Path) -> dict[str, object]:
    m = read_bundle(bundles / "x86-v1.kedge", keys).manifest
    return json.loads(m.to_bytes())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bundle_id", "../../../home/user/.ssh/authorized_keys"),
        ("bundle_id", "/etc/passwd"),
        ("bundle_id", "a\\b"),
        ("bundle_id", ".hidden"),
        ("bundle_id", "x" * 200),
        ("profile", "../../etc/x"),
    ],
)
def test_path_like_names_are_refused(bundles: Path, keys: Path, field: str, value: str) -> None:
    raw = {**_manifest(bundles, keys), field: value}
    with pytest.raises(ManifestError, match=rf"field '{field}': .*not a plain name"):
        parse_manifest(raw)


@pytest.mark.parametrize("name", ["../segment_0", "/abs", "a//b", "edgetpu/../../x", ""])
def test_artifact_names_are_plain(bundles: Path, keys: Path, name: str) -> None:
    raw = _manifest(bundles, keys)
    raw["artifacts"][0]["name"] = name  # type: ignore[index]
    with pytest.raises(ManifestError, match=r"field 'artifacts.0.name': .*not a plain name"):
        parse_manifest(raw)


def test_builder_names_still_pass(bundles: Path, keys: Path) -> None:
    raw = _manifest(bundles, keys)
    raw["artifacts"][0]["name"] = "edgetpu/model_edgetpu.cc"  # type: ignore[index]
    assert parse_manifest(raw).artifacts[0].name == "edgetpu/model_edgetpu.cc"


def test_a_signed_bundle_with_a_traversal_id_is_refused_on_read(bundles: Path, keys: Path, tmp_path: Path) -> None:
    """Even correctly signed (a stolen or careless signing key), the name never reaches a path."""
    raw = {**_manifest(bundles, keys), "bundle_id": "../../kernels-escape"}
    body = json.dumps(raw, sort_keys=True, indent=1).encode()
    sig = {"alg": "Ed25519", "key_id": "x", "signature": base64.b64encode(load_private_key(keys).sign(body)).decode()}
    out = tmp_path / "evil.kedge"
    with zipfile.ZipFile(bundles / "x86-v1.kedge") as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = {"manifest.json": body, "signature.json": json.dumps(sig).encode()}.get(info.filename)
            zout.writestr(info, data if data is not None else zin.read(info))
    with pytest.raises(BundleError, match=r"evil.kedge:manifest.json: field 'bundle_id': .*not a plain name"):
        read_bundle(out, keys)
