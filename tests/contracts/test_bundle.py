"""Signed bundles: round trip, and every way a bundle can be untrustworthy is refused with one line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from kasmina_edge.contracts.bundle import (
    PRIVATE_KEY_NAME,
    BundleError,
    init_keys,
    load_private_key,
    read_bundle,
    write_bundle,
)
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.manifest import SCHEMA, ManifestError, json_schema, parse_manifest


def _manifest() -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "target": "edgetpu",
        "profile": "coral-usb",
        "format": "tflite-int8",
        "model": {"checkpoint_sha256": "ab" * 32},
        "chain": {"segments": ["seg0", "seg1"], "default_active": {}},
        "artifacts": [
            {"name": "seg0", "kind": "segment", "format": "tflite-int8", "file": "artifacts/seg0.tflite",
             "sha256": "", "bytes": 0},
            {"name": "k0", "kind": "kernel", "format": "tflite-int8", "file": "artifacts/k0.tflite",
             "sha256": "", "bytes": 0, "site": 0, "blueprint": "bottleneck_adapter"},
        ],
        "provenance": {"kasmina_edge": "0.1.0", "built_at": "2026-11-22T00:00:00Z"},
    }


FILES = {"artifacts/seg0.tflite": b"segment-bytes", "artifacts/k0.tflite": b"kernel-bytes" * 10}


@pytest.fixture()
def keys(tmp_path: Path) -> Path:
    init_keys(tmp_path / "keys")
    return tmp_path / "keys"


def _write(tmp_path: Path, keys: Path) -> Path:
    out = tmp_path / "b.kedge"
    write_bundle(out, manifest=_manifest(), files=FILES, keys=keys)
    return out


def _rewrite(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change.get(info.filename, zin.read(info)))


def test_round_trip(tmp_path: Path, keys: Path) -> None:
    b = read_bundle(_write(tmp_path, keys), keys)
    assert b.artifact_bytes("k0") == FILES["artifacts/k0.tflite"]
    assert b.manifest.artifact("seg0").sha256 and b.manifest.kernels()[0].site == 0


def test_private_key_never_in_bundle(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    secret = (keys / PRIVATE_KEY_NAME).read_bytes()
    raw = out.read_bytes()
    assert b"PRIVATE KEY" not in raw and secret not in raw
    with zipfile.ZipFile(out) as z:
        blob = b"".join(z.read(n) for n in z.namelist())
    assert b"PRIVATE KEY" not in blob


def test_tampered_artifact_refused(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    bad = tmp_path / "bad.kedge"
    _rewrite(out, bad, {"artifacts/k0.tflite": b"evil"})
    with pytest.raises(BundleError, match="k0.tflite does not match its SHA-256"):
        read_bundle(bad, keys)


def test_tampered_manifest_refused(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    with zipfile.ZipFile(out) as z:
        m = json.loads(z.read("manifest.json"))
    m["profile"] = "stm32h743"
    bad = tmp_path / "bad.kedge"
    _rewrite(out, bad, {"manifest.json": json.dumps(m).encode()})
    with pytest.raises(BundleError, match="signature does not verify"):
        read_bundle(bad, keys)


def test_extra_unsigned_file_refused(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    with zipfile.ZipFile(out, "a") as z:
        z.writestr("artifacts/extra.tflite", b"x")
    with pytest.raises(BundleError, match="not in the signed manifest"):
        read_bundle(out, keys)


def test_wrong_key_refused(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    init_keys(tmp_path / "other")
    with pytest.raises(BundleError, match="signature does not verify"):
        read_bundle(out, tmp_path / "other")


def test_truncated_zip_refused(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    cut = tmp_path / "cut.kedge"
    cut.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(BundleError, match="not a readable bundle"):
        read_bundle(cut, keys)


def test_missing_artifact_file_refused_at_write(tmp_path: Path, keys: Path) -> None:
    files = {"artifacts/seg0.tflite": b"x"}
    with pytest.raises(BundleError, match="k0"):
        write_bundle(tmp_path / "x.kedge", manifest=_manifest(), files=files, keys=keys)
    assert not (tmp_path / "x.kedge").exists()


def test_keys_not_overwritten_without_force(keys: Path) -> None:
    before = load_private_key(keys)
    with pytest.raises(KasminaError, match="already exists"):
        init_keys(keys)
    init_keys(keys, force=True)
    assert load_private_key(keys).public_key() != before.public_key()
    assert oct((keys / PRIVATE_KEY_NAME).stat().st_mode & 0o777) == "0o600"


def test_manifest_errors_name_the_field() -> None:
    m = _manifest()
    m["target"] = "gpu"
    with pytest.raises(ManifestError, match="field 'target'"):
        parse_manifest(m)
    with pytest.raises(ManifestError, match="schema"):
        parse_manifest({**_manifest(), "schema": "kasmina-bundle/99"})
    with pytest.raises(ManifestError, match="not JSON"):
        parse_manifest(b"{nope")


def test_committed_json_schema_is_current() -> None:
    committed = Path(__file__).parents[2] / "kasmina_edge" / "contracts" / "manifest.schema.json"
    assert json.loads(committed.read_text()) == json_schema(), "run tools/export_schema.py"
