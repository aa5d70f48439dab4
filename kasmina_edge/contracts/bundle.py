"""Signed `.kedge` bundles: write on the host, verify on the device (no torch).

A bundle is a zip: `manifest.json` (canonical JSON, with the SHA-256 and size of every
artifact), the artifact files, and `signature.json` (Ed25519 over the manifest bytes).
Verifying the manifest's signature and then each file's hash authenticates everything.
The private key never enters a bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.manifest import BundleManifest, ManifestError, parse_manifest

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "signature.json"
PRIVATE_KEY_NAME = "bundle-signing.key"
PUBLIC_KEY_NAME = "bundle-signing.pub"


class BundleError(KasminaError):
    """A bundle that cannot be trusted or read: bad zip, signature, hash, missing file."""


def default_keys_dir() -> Path:
    env = os.environ.get("KASMINA_KEYS_DIR")
    return Path(env) if env else Path.home() / ".config" / "kasmina-edge" / "keys"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def init_keys(directory: Path | None = None, *, force: bool = False) -> tuple[Path, Path]:
    """Create an Ed25519 key pair; refuses to overwrite an existing one unless ``force``."""
    directory = directory or default_keys_dir()
    priv_path, pub_path = directory / PRIVATE_KEY_NAME, directory / PUBLIC_KEY_NAME
    if priv_path.exists() and not force:
        raise KasminaError(f"{priv_path} already exists (use --force to replace it)")
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _atomic_write(priv_path, priv, mode=0o600)
    _atomic_write(pub_path, pub, mode=0o644)
    return priv_path, pub_path


def load_private_key(directory: Path | None = None) -> Ed25519PrivateKey:
    path = (directory or default_keys_dir()) / PRIVATE_KEY_NAME
    if not path.exists():
        raise KasminaError(f"no signing key at {path}: run `kasmina-edge keys init` (or pass --keys DIR)")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KasminaError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(source: Path | None = None) -> Ed25519PublicKey:
    """``source`` is a keys directory or a PEM file."""
    path = source or default_keys_dir()
    if path.is_dir():
        path = path / PUBLIC_KEY_NAME
    if not path.exists():
        raise KasminaError(f"no public key at {path}: run `kasmina-edge keys init` (or pass --keys DIR)")
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise KasminaError(f"{path}: not an Ed25519 public key")
    return key


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(
    out: Path,
    *,
    manifest: BundleManifest | dict[str, Any],
    files: dict[str, bytes],
    keys: Path | Ed25519PrivateKey | None = None,
) -> BundleManifest:
    """Write a signed bundle atomically. Hashes and sizes in the manifest are (re)computed from ``files``."""
    private = keys if isinstance(keys, Ed25519PrivateKey) else load_private_key(keys)
    raw = manifest.model_dump(mode="json", by_alias=True) if isinstance(manifest, BundleManifest) else dict(manifest)
    # The manifest lists every file that travels beside it, with its hash.
    raw["files"] = {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in sorted(files.items())}
    for art in raw.get("artifacts", []):
        data = files.get(art.get("file", ""))
        if data is None:
            raise BundleError(f"artifact {art.get('name')!r}: file {art.get('file')!r} is not in the bundle")
        art["sha256"], art["bytes"] = _sha256(data), len(data)
    parsed = parse_manifest(raw)
    manifest_bytes = parsed.to_bytes()
    signature = {
        "alg": "Ed25519",
        "key_id": key_id(private.public_key()),
        "signature": base64.b64encode(private.sign(manifest_bytes)).decode(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST_NAME, manifest_bytes)
            z.writestr(SIGNATURE_NAME, json.dumps(signature, indent=1))
            for name, data in sorted(files.items()):
                if name in (MANIFEST_NAME, SIGNATURE_NAME):
                    raise BundleError(f"artifact name {name!r} is reserved")
                z.writestr(name, data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return parsed


@dataclass
class Bundle:
    """A verified bundle: its manifest and every file's bytes (hash-checked)."""

    path: Path
    manifest: BundleManifest
    key_id: str
    files: dict[str, bytes] = field(repr=False)

    def read(self, name: str) -> bytes:
        try:
            return self.files[name]
        except KeyError:
            raise BundleError(f"{self.path}: no file {name!r} in the bundle") from None

    def artifact_bytes(self, artifact: str) -> bytes:
        return self.read(self.manifest.artifact(artifact).file)


def read_bundle(path: Path, public_key: Ed25519PublicKey | Path | None = None) -> Bundle:
    """Open a bundle, verify its signature and every file's SHA-256; one clear line on any failure."""
    path = Path(path)
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle")
    try:
        with zipfile.ZipFile(path) as z:
            contents = {info.filename: z.read(info) for info in z.infolist() if not info.is_dir()}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BundleError(f"{path}: not a readable bundle ({exc})") from None
    except zipfile.LargeZipFile as exc:  # pragma: no cover - defensive
        raise BundleError(f"{path}: {exc}") from None
    if MANIFEST_NAME not in contents or SIGNATURE_NAME not in contents:
        raise BundleError(f"{path}: missing {MANIFEST_NAME} or {SIGNATURE_NAME}")
    manifest_bytes = contents.pop(MANIFEST_NAME)
    try:
        sig = json.loads(contents.pop(SIGNATURE_NAME))
        signature = base64.b64decode(sig["signature"])
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{path}: {SIGNATURE_NAME} is malformed") from None
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise BundleError(
            f"{path}: signature does not verify with key {key_id(key)} (signed by {sig.get('key_id', '?')})"
        ) from None
    try:
        manifest = parse_manifest(manifest_bytes, f"{path}:{MANIFEST_NAME}")
    except ManifestError as exc:
        raise BundleError(str(exc)) from None
    listed: dict[str, Any] = getattr(manifest, "files", None) or {}
    for name, meta in listed.items():
        data = contents.get(name)
        if data is None:
            raise BundleError(f"{path}: {name} is listed in the manifest but missing from the bundle")
        if _sha256(data) != meta["sha256"]:
            raise BundleError(f"{path}: {name} does not match its SHA-256 in the manifest (tampered or corrupt)")
    extra = sorted(set(contents) - set(listed))
    if extra:
        raise BundleError(f"{path}: {extra[0]} is in the bundle but not in the signed manifest")
    return Bundle(path, manifest, str(sig.get("key_id", "")), contents)
