"""Signed bundles: round trip, and every way a bundle can be untrustworthy is refused with one line."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kasmina_edge.contracts.bundle import (
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    BundleError,
    SigningKeyError,
    generate_keypair,
    init_keys,
    load_private_key,
    load_public_key,
    read_bundle,
    write_bundle,
)
from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.manifest import SCHEMA, ManifestError, json_schema_text, parse_manifest


def _manifest() -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "target": "edgetpu",
        "profile": "coral-usb",
        "format": "tflite-int8",
        "model": {"checkpoint_sha256": "ab" * 32},
        "chain": {"segments": ["seg0", "seg1"], "default_active": {}},
        "artifacts": [
            {
                "name": "seg0",
                "kind": "segment",
                "format": "tflite-int8",
                "file": "artifacts/seg0.tflite",
                "sha256": "",
                "bytes": 0,
            },
            {
                "name": "k0",
                "kind": "kernel",
                "format": "tflite-int8",
                "file": "artifacts/k0.tflite",
                "sha256": "",
                "bytes": 0,
                "site": 0,
                "blueprint": "bottleneck_adapter",
            },
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
    with pytest.raises(
        BundleError, match="artifact 'k0': artifacts/k0.tflite is 4 bytes, the manifest says 120"
    ):
        read_bundle(bad, keys)
    # same size, different bytes: only the hash can tell
    same_size = bytearray(FILES["artifacts/k0.tflite"])
    same_size[7] ^= 0x01
    _rewrite(out, bad, {"artifacts/k0.tflite": bytes(same_size)})
    with pytest.raises(BundleError, match="artifact 'k0': artifacts/k0.tflite does not match its SHA-256"):
        read_bundle(bad, keys)


def test_tampered_manifest_refused(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    with zipfile.ZipFile(out) as z:
        m = json.loads(z.read("manifest.json"))
    m["profile"] = "stm32h743"
    bad = tmp_path / "bad.kedge"
    _rewrite(out, bad, {"manifest.json": json.dumps(m).encode()})
    with pytest.raises(BundleError, match="signature does not verify .*modified after signing"):
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
    with pytest.raises(BundleError, match="signature does not verify .*signed by"):
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
    with pytest.raises(SigningKeyError, match="already exists"):
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
    assert committed.read_text() == json_schema_text(), "stale: run python tools/export_schema.py"


# --- added: more ways a bundle can be wrong, and what the manifest holds ---------------------------------


def test_round_trip_fills_hashes_listing_and_id(tmp_path: Path, keys: Path) -> None:
    signed = write_bundle(tmp_path / "b.kedge", _manifest(), FILES, keys)  # positional form
    assert set(signed.files) == set(FILES)
    for a in signed.artifacts:
        assert a.sha256 == hashlib.sha256(FILES[a.file]).hexdigest() and a.bytes == len(FILES[a.file])
    assert signed.bundle_id and signed.bundle_id.startswith("edgetpu-v1-")
    b = read_bundle(tmp_path / "b.kedge", load_public_key(keys))
    assert b.manifest == signed and b.files == FILES


def test_same_inputs_give_the_same_bytes(tmp_path: Path, keys: Path) -> None:
    key = load_private_key(keys)
    write_bundle(tmp_path / "a.kedge", _manifest(), FILES, key)
    write_bundle(tmp_path / "b.kedge", _manifest(), FILES, key)
    assert (tmp_path / "a.kedge").read_bytes() == (tmp_path / "b.kedge").read_bytes()


def test_listed_file_missing_from_zip_is_named(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    bad = tmp_path / "bad.kedge"
    with zipfile.ZipFile(out) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            if info.filename != "artifacts/seg0.tflite":
                zout.writestr(info.filename, zin.read(info))
    with pytest.raises(BundleError, match="artifact 'seg0': artifacts/seg0.tflite is listed .* missing"):
        read_bundle(bad, keys)


def test_missing_signature_and_not_a_zip(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    bad = tmp_path / "nosig.kedge"
    with zipfile.ZipFile(out) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            if info.filename != "signature.json":
                zout.writestr(info.filename, zin.read(info))
    with pytest.raises(BundleError, match="missing manifest.json or signature.json"):
        read_bundle(bad, keys)
    junk = tmp_path / "junk.kedge"
    junk.write_bytes(b"definitely not a zip")
    with pytest.raises(BundleError, match="not a readable bundle"):
        read_bundle(junk, keys)
    with pytest.raises(BundleError, match="no such bundle"):
        read_bundle(tmp_path / "absent.kedge", keys)


def test_duplicate_zip_entries_refused(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    with pytest.warns(UserWarning), zipfile.ZipFile(out, "a") as z:
        z.writestr("artifacts/k0.tflite", b"second copy")
    with pytest.raises(BundleError, match="appears twice"):
        read_bundle(out, keys)


def test_truncated_at_every_tenth_is_refused(tmp_path: Path, keys: Path) -> None:
    data = _write(tmp_path, keys).read_bytes()
    cut = tmp_path / "cut.kedge"
    for frac in range(1, 10):
        cut.write_bytes(data[: len(data) * frac // 10])
        with pytest.raises(BundleError):
            read_bundle(cut, keys)


def test_private_key_refused_as_a_file(tmp_path: Path, keys: Path) -> None:
    pem = (keys / PRIVATE_KEY_NAME).read_bytes()
    for leak in (pem, b"prefix" + pem, b"-----BEGIN PRIVATE KEY-----\nother\n"):
        files = {**FILES, "notes.txt": leak}
        with pytest.raises(BundleError, match="notes.txt: holds a private key"):
            write_bundle(tmp_path / "leak.kedge", _manifest(), files, keys)
    assert not (tmp_path / "leak.kedge").exists()


def test_reserved_and_unsafe_paths_refused(tmp_path: Path, keys: Path) -> None:
    with pytest.raises(BundleError, match="reserved"):
        write_bundle(tmp_path / "x.kedge", _manifest(), {**FILES, "manifest.json": b"{}"}, keys)
    m = _manifest()
    m["artifacts"][0]["file"] = "../escape.tflite"  # type: ignore[index]
    with pytest.raises(BundleError, match="not a plain relative path"):
        write_bundle(tmp_path / "x.kedge", m, {**FILES, "../escape.tflite": b"x"}, keys)


def test_write_is_atomic_on_failure(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    before = out.read_bytes()
    with pytest.raises(BundleError):
        write_bundle(out, _manifest(), {"artifacts/seg0.tflite": b"x"}, keys)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.kedge", "keys"]


def test_reference_vectors_travel_and_load(tmp_path: Path, keys: Path) -> None:
    buf = io.BytesIO()
    x, y = np.arange(12, dtype=np.int8).reshape(1, 12), np.array([[3, -2, 1, 0, 5]], dtype=np.int8)
    np.savez(buf, input_0=x, output_0=y)
    m = _manifest()
    m["artifacts"][1]["reference"] = "reference/k0.npz"  # type: ignore[index]
    out = tmp_path / "ref.kedge"
    write_bundle(out, m, {**FILES, "reference/k0.npz": buf.getvalue()}, keys)
    vectors = read_bundle(out, keys).reference_vectors("k0")
    np.testing.assert_array_equal(vectors["input_0"], x)
    np.testing.assert_array_equal(vectors["output_0"], y)
    with pytest.raises(BundleError, match="reference vectors 'reference/k9.npz' are not in the bundle"):
        m["artifacts"][1]["reference"] = "reference/k9.npz"  # type: ignore[index]
        write_bundle(out, m, FILES, keys)


def test_seed_kernel_and_tensor_specs_validate() -> None:
    m = _manifest()
    m["artifacts"][1].update(  # type: ignore[union-attr]
        sha256="ab" * 32,
        bytes=1,
        input_specs=[
            {"name": "x", "shape": [1, 1, 64, 32], "dtype": "int8", "scale": [0.05], "zero_point": [-3]}
        ],
        output_specs=[
            {"name": "y", "shape": [1, 1, 64, 32], "dtype": "int8", "scale": [0.04], "zero_point": [0]}
        ],
        seed_kernel={
            "blueprint": "bottleneck_adapter",
            "condition_tags": ["noise:ma"],
            "param_count": 292,
            "bits": 8,
            "lifecycle": [
                {
                    "src": "DORMANT",
                    "dst": "GERMINATED",
                    "reason": "condition_detected",
                    "gate": {"gate": "G0", "passed": True, "reason": "ok"},
                }
            ],
            "g1_verdict": {
                "gate": "G1",
                "passed": True,
                "reason": "grad norm 0.8",
                "metrics": {"grad_norm": 0.8},
            },
            "measured_gain": 0.031,
        },
    )
    m["artifacts"][0].update(sha256="cd" * 32, bytes=1)  # type: ignore[union-attr]
    parsed = parse_manifest(m)
    info = parsed.artifact("k0").seed_kernel
    assert info is not None and info.param_count == 292 and info.g1_verdict is not None
    bad = json.loads(json.dumps(m))
    bad["artifacts"][1]["seed_kernel"]["g1_verdict"]["gate"] = "G4"
    with pytest.raises(ManifestError, match="g1_verdict holds gate G4"):
        parse_manifest(bad)
    bad = json.loads(json.dumps(m))
    bad["artifacts"][1]["input_specs"][0]["zero_point"] = [0, 1]
    with pytest.raises(ManifestError, match="differ in length"):
        parse_manifest(bad)
    bad = json.loads(json.dumps(m))
    bad["artifacts"][1]["seed_kernel"]["lifecycle"][0]["dst"] = "HATCHED"
    with pytest.raises(ManifestError, match="dst"):
        parse_manifest(bad)
    bad = json.loads(json.dumps(m))
    bad["artifacts"][1]["name"] = "seg0"
    with pytest.raises(ManifestError, match="artifact names repeat"):
        parse_manifest(bad)


def test_stage_names_in_the_schema_are_the_lifecycle_stages() -> None:
    from typing import get_args

    from kasmina_edge.contracts.lifecycle import Gate, Stage
    from kasmina_edge.contracts.manifest import GateName, StageName

    assert list(get_args(StageName)) == [s.name for s in Stage]
    assert list(get_args(GateName)) == [g.value for g in Gate]


def test_export_schema_tool_check_mode() -> None:
    root = Path(__file__).parents[2]
    proc = subprocess.run(
        [sys.executable, str(root / "tools" / "export_schema.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr


def test_key_loading_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / PUBLIC_KEY_NAME).write_text("not a pem")
    with pytest.raises(SigningKeyError, match="not a readable public key PEM"):
        load_public_key(tmp_path)
    with pytest.raises(SigningKeyError, match="no signing key"):
        load_private_key(tmp_path / "nowhere")
    assert isinstance(SigningKeyError("x"), KasminaError)


def test_generated_keys_sign_and_verify() -> None:
    key = generate_keypair()
    key.public_key().verify(key.sign(b"m"), b"m")


def _kernels_manifest() -> dict[str, object]:
    m = _manifest()
    m["kind"] = "kernels"
    m["version"] = 7
    m["chain"] = None
    m["artifacts"] = [m["artifacts"][1]]  # type: ignore[index]
    return m


def test_kernel_only_bundle_names_its_base_and_round_trips(tmp_path: Path, keys: Path) -> None:
    """A patient-specific kernel for a base already on the device: no segments, the base's hash."""
    out = tmp_path / "patient.kedge"
    signed = write_bundle(
        out, _kernels_manifest(), {"artifacts/k0.tflite": FILES["artifacts/k0.tflite"]}, keys
    )
    b = read_bundle(out, keys)
    assert b.manifest == signed
    assert b.manifest.kind == "kernels" and b.manifest.version == 7
    assert b.manifest.base_checkpoint == "ab" * 32
    assert [a.name for a in b.manifest.kernels()] == ["k0"]
    assert b.artifact_bytes("k0") == FILES["artifacts/k0.tflite"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m["artifacts"].append({**_manifest()["artifacts"][0], "sha256": "cd" * 32}),  # type: ignore[index, dict-item]
            "carries no base model",
        ),
        (lambda m: m["artifacts"][0].update(kind="report"), "at least one kernel"),
        (lambda m: m["artifacts"][0].update(site=None), "name no site"),
        (lambda m: m.update(chain={"segments": ["seg0"]}), "no segment chain"),
        (lambda m: m["model"].pop("checkpoint_sha256"), "checkpoint_sha256"),
    ],
)
def test_kernel_only_bundle_refusals(change: object, message: str) -> None:
    m = json.loads(json.dumps(_kernels_manifest()))
    for a in m["artifacts"]:
        a.update(sha256="ab" * 32, bytes=1)
    change(m)  # type: ignore[operator]
    with pytest.raises(ManifestError, match=message):
        parse_manifest(m)


def test_site_activation_stats_are_checked_against_the_site() -> None:
    m = json.loads(json.dumps(_manifest()))
    for a in m["artifacts"]:
        a.update(sha256="ab" * 32, bytes=1)
    stats = {"mean": [0.1, -0.2], "std": [1.0, 0.5], "windows": 512}
    m["sites"] = [{"index": 0, "name": "block1", "channels": 2, "length": 64, "activation_stats": stats}]
    site = parse_manifest(m).sites[0]
    assert site.activation_stats is not None and site.activation_stats.std == [1.0, 0.5]
    for bad, message in (
        ({**stats, "std": [1.0]}, "mean has 2 channels, std 1"),
        ({**stats, "std": [1.0, -0.5]}, "greater than or equal to 0"),
        ({**stats, "mean": [0.0] * 3, "std": [1.0] * 3}, "activation_stats has 3 channels, the site 2"),
        ({**stats, "windows": 0}, "windows"),
    ):
        m["sites"][0]["activation_stats"] = bad
        with pytest.raises(ManifestError, match=message):
            parse_manifest(m)


def test_files_are_read_lazily_and_kept_once_read(tmp_path: Path, keys: Path) -> None:
    b = read_bundle(_write(tmp_path, keys), keys)
    files = b.files
    assert set(files) == set(FILES) and len(files) == len(FILES)
    assert "artifacts/k0.tflite" in files and "artifacts/nope" not in files
    assert files.loaded == frozenset()  # type: ignore[attr-defined]  # verified, but nothing held
    assert b.artifact_bytes("k0") == FILES["artifacts/k0.tflite"]
    assert files.loaded == {"artifacts/k0.tflite"}  # type: ignore[attr-defined]
    assert dict(files) == FILES
    assert files.get("artifacts/nope") is None
    with pytest.raises(BundleError, match="no file 'artifacts/nope' in the bundle"):
        b.read("artifacts/nope")


def test_file_changed_on_disk_after_verification_is_refused_when_read(tmp_path: Path, keys: Path) -> None:
    out = _write(tmp_path, keys)
    b = read_bundle(out, keys)
    assert b.artifact_bytes("seg0") == FILES["artifacts/seg0.tflite"]  # read before the swap: kept
    same_size = bytearray(FILES["artifacts/k0.tflite"])
    same_size[0] ^= 0x01
    swapped = tmp_path / "swapped.kedge"
    _rewrite(out, swapped, {"artifacts/k0.tflite": bytes(same_size)})
    swapped.replace(out)
    assert b.artifact_bytes("seg0") == FILES["artifacts/seg0.tflite"]
    with pytest.raises(
        BundleError, match="artifact 'k0': .* does not match its SHA-256 .*since it was verified"
    ):
        b.artifact_bytes("k0")
    out.unlink()
    with pytest.raises(BundleError, match="not a readable bundle"):
        b.read("artifacts/k0.tflite")


def test_raw_private_key_bytes_never_in_bundle(tmp_path: Path, keys: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    out = _write(tmp_path, keys)
    raw_key = load_private_key(keys).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    with zipfile.ZipFile(out) as z:
        blob = out.read_bytes() + b"".join(z.read(n) for n in z.namelist())
    assert raw_key not in blob


def test_every_corrupted_byte_is_refused_or_harmless(tmp_path: Path, keys: Path) -> None:
    """Damage anywhere in the zip: one BundleError line, or (zip metadata only) the exact signed bytes."""
    raw = _write(tmp_path, keys).read_bytes()
    public = load_public_key(keys)
    bad = tmp_path / "x.kedge"
    refused = harmless = 0
    for i in range(0, len(raw), 3):
        damaged = bytearray(raw)
        damaged[i] ^= 0xFF
        bad.write_bytes(damaged)
        try:
            b = read_bundle(bad, public)
            assert dict(b.files) == FILES, f"byte {i}: a changed file was accepted"
            harmless += 1
        except BundleError:
            refused += 1
    assert refused > harmless > 0  # both kinds of byte exist; most damage is caught


def test_signed_bundle_of_an_unknown_schema_version_is_refused(tmp_path: Path, keys: Path) -> None:
    """Genuinely signed by a newer builder: the reader refuses rather than guess at the fields."""
    import base64

    out = _write(tmp_path, keys)
    with zipfile.ZipFile(out) as z:
        m = json.loads(z.read("manifest.json"))
    m["schema"] = "kasmina-bundle/99"
    manifest_bytes = json.dumps(m, sort_keys=True).encode()
    signature = {
        "alg": "Ed25519",
        "signature": base64.b64encode(load_private_key(keys).sign(manifest_bytes)).decode(),
    }
    future = tmp_path / "future.kedge"
    _rewrite(out, future, {"manifest.json": manifest_bytes, "signature.json": json.dumps(signature).encode()})
    with pytest.raises(BundleError, match="schema 'kasmina-bundle/99' is not supported .*kasmina-bundle/1"):
        read_bundle(future, keys)
