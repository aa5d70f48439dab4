"""Signed `.kedge` bundles: write on the host, verify on the device (no torch).

A bundle is a zip: `manifest.json` (canonical JSON, with the SHA-256 and size of every
file beside it), the files, and `signature.json` (Ed25519 over the exact manifest bytes).
Verifying the signature and then each file's hash authenticates everything; a file the
manifest does not list is refused. The reader hashes every file up front without keeping
it; a file's bytes are read (and hashed again) when first asked for. The private key never
enters a bundle: the writer refuses any file that contains it. Zip entries carry a fixed
date, so the same inputs give the same bytes (Ed25519 signatures are deterministic).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.contracts.manifest import BundleManifest, ManifestError, parse_manifest

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "signature.json"
PRIVATE_KEY_NAME = "bundle-signing.key"
PUBLIC_KEY_NAME = "bundle-signing.pub"
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed entry date: reproducible bundles
MAX_FILE_BYTES = 256 * 1024 * 1024  # a reader refuses larger entries before inflating them


class BundleError(KasminaError):
    """A bundle that cannot be trusted or read: bad zip, signature, hash, missing file."""


class SigningKeyError(KasminaError):
    """A signing key that is missing, unreadable or not Ed25519."""


# ---------------------------------------------------------------------------------------------
# Keys


def default_keys_dir() -> Path:
    env = os.environ.get("KASMINA_KEYS_DIR")
    return Path(env) if env else Path.home() / ".config" / "kasmina-edge" / "keys"


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Key rotation: the old key signs the new one; a device moves its trust anchor only on such a statement

ROTATION_FORMAT = "kasmina-key-rotation/1"


def sign_rotation(old: Ed25519PrivateKey, new: Ed25519PublicKey) -> dict[str, Any]:
    """A statement, signed by the key devices trust now, that ``new`` replaces it."""
    body = {"format": ROTATION_FORMAT, "from": key_id(old.public_key()), "to": key_id(new),
            "new_public_pem": _public_pem(new).decode()}
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {**body, "signature": base64.b64encode(old.sign(data)).decode()}


def verify_rotation(statement: Any, trusted: Ed25519PublicKey) -> Ed25519PublicKey:
    """The new key, if ``statement`` is a rotation signed by ``trusted``; one line otherwise."""
    if not isinstance(statement, dict) or statement.get("format") != ROTATION_FORMAT:
        raise SigningKeyError(f"not a key rotation statement ({ROTATION_FORMAT})")
    body = {k: statement.get(k) for k in ("format", "from", "to", "new_public_pem")}
    if body["from"] != key_id(trusted):
        raise SigningKeyError(f"the rotation is from key {body['from']}, the device trusts {key_id(trusted)}")
    try:
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        trusted.verify(base64.b64decode(str(statement.get("signature")), validate=True), data)
        new = serialization.load_pem_public_key(str(body["new_public_pem"]).encode())
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningKeyError("the key rotation statement does not verify with the trusted key") from None
    if not isinstance(new, Ed25519PublicKey) or key_id(new) != body["to"]:
        raise SigningKeyError("the key rotation statement names another key than it carries")
    return new


# ---------------------------------------------------------------------------------------------
# Versions the keys folder has signed (the default of `build --version`)

SIGNED_VERSIONS_NAME = "signed-versions.json"


def keys_folder(keys: Path | None = None) -> Path:
    """The keys folder itself, for a folder or a PEM file inside it (default: the keys folder)."""
    path = Path(keys) if keys is not None else default_keys_dir()
    return path if path.is_dir() or path.suffix not in (".key", ".pem", ".pub") else path.parent


def signed_versions(keys: Path | None = None) -> dict[str, Any]:
    """``{target: {"newest": N, "bundles": [...]}}`` as recorded in the keys folder (empty when none)."""
    path = keys_folder(keys) / SIGNED_VERSIONS_NAME
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"{path}: not a readable version record ({exc})") from None
    targets = raw.get("targets") if isinstance(raw, dict) else None
    if not isinstance(targets, dict):
        raise SigningKeyError(f"{path}: no 'targets' object")
    return targets


def next_version(target: str, keys: Path | None = None) -> int:
    """One more than the newest version the keys folder signed for ``target`` (1 for the first)."""
    entry = signed_versions(keys).get(target) or {}
    return int(entry.get("newest") or 0) + 1


def record_signed_version(
    target: str, version: int, bundle_id: str | None, keys: Path | None = None, *, kind: str = "full"
) -> Path:
    """Note a signed bundle in the keys folder's record; ``newest`` never goes down."""
    folder = keys_folder(keys)
    targets = signed_versions(folder)
    entry = dict(targets.get(target) or {})
    entry["newest"] = max(int(entry.get("newest") or 0), int(version))
    entry["bundles"] = [
        *list(entry.get("bundles") or [])[-99:],
        {"version": int(version), "bundle_id": bundle_id, "kind": kind,
         "signed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    ]
    targets[target] = entry
    path = folder / SIGNED_VERSIONS_NAME
    _atomic_write(path, (json.dumps({"targets": targets}, indent=1, sort_keys=True) + "\n").encode())
    return path


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_keypair() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def save_keypair(directory: Path, key: Ed25519PrivateKey, *, force: bool = False) -> tuple[Path, Path]:
    """Private key PEM (0600, folder 0700) and public key PEM; refuses to overwrite unless ``force``."""
    priv_path, pub_path = directory / PRIVATE_KEY_NAME, directory / PUBLIC_KEY_NAME
    if priv_path.exists() and not force:
        raise SigningKeyError(f"{priv_path} already exists (use --force to replace it)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _atomic_write(priv_path, _private_pem(key), mode=0o600)
    _atomic_write(pub_path, _public_pem(key.public_key()), mode=0o644)
    return priv_path, pub_path


def init_keys(directory: Path | None = None, *, force: bool = False) -> tuple[Path, Path]:
    """Create and save an Ed25519 key pair; refuses to overwrite an existing one unless ``force``."""
    return save_keypair(directory or default_keys_dir(), generate_keypair(), force=force)


def load_private_key(directory: Path | None = None) -> Ed25519PrivateKey:
    """The private key from a keys folder, or from a PEM file."""
    path = directory or default_keys_dir()
    if path.is_dir() or not path.exists():
        path = path / PRIVATE_KEY_NAME
    if not path.exists():
        raise SigningKeyError(f"no signing key at {path}: run `kasmina-edge keys init` (or pass --keys DIR)")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{path}: not a readable private key PEM ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(source: Path | None = None) -> Ed25519PublicKey:
    """``source`` is a keys directory or a PEM file."""
    path = source or default_keys_dir()
    if path.is_dir():
        path = path / PUBLIC_KEY_NAME
    if not path.exists():
        raise SigningKeyError(f"no public key at {path}: run `kasmina-edge keys init` (or pass --keys DIR)")
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{path}: not a readable public key PEM ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: not an Ed25519 public key")
    return key


# ---------------------------------------------------------------------------------------------
# Writing


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refuse_secrets(files: dict[str, bytes], private: Ed25519PrivateKey) -> None:
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = _private_pem(private)
    for name, data in files.items():
        if raw in data or pem in data or b"PRIVATE KEY-----" in data:
            raise BundleError(f"{name}: holds a private key; a private key never goes into a bundle")


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def write_bundle(
    out: Path,
    manifest: BundleManifest | dict[str, Any],
    files: dict[str, bytes],
    keys: Path | Ed25519PrivateKey | None = None,
) -> BundleManifest:
    """Write a signed bundle atomically; returns the manifest as signed.

    ``files`` maps paths inside the zip to bytes. The artifacts' hashes and sizes, the ``files``
    listing and the ``bundle_id`` are (re)computed from them. ``keys`` is the private key, or a
    keys folder / PEM file (default: the keys folder).
    """
    private = keys if isinstance(keys, Ed25519PrivateKey) else load_private_key(keys)
    for name in files:
        if name in (MANIFEST_NAME, SIGNATURE_NAME):
            raise BundleError(f"file name {name!r} is reserved for the bundle itself")
    _refuse_secrets(files, private)
    raw = (
        manifest.model_dump(mode="json", by_alias=True)
        if isinstance(manifest, BundleManifest)
        else dict(manifest)
    )
    raw["artifacts"] = [dict(a) for a in raw.get("artifacts", [])]
    for art in raw["artifacts"]:
        data = files.get(art.get("file", ""))
        if data is None:
            raise BundleError(f"artifact {art.get('name')!r}: file {art.get('file')!r} is not in the bundle")
        art["sha256"], art["bytes"] = _sha256(data), len(data)
        ref = art.get("reference")
        if ref is not None and ref not in files:
            raise BundleError(
                f"artifact {art.get('name')!r}: reference vectors {ref!r} are not in the bundle"
            )
    raw["files"] = {
        name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in sorted(files.items())
    }
    raw["bundle_id"] = None
    content_id = _sha256(json.dumps(raw, sort_keys=True, default=str).encode())[:12]
    raw["bundle_id"] = f"{raw.get('target', 'bundle')}-v{raw.get('version', 1)}-{content_id}"
    try:
        parsed = parse_manifest(raw)
    except ManifestError as exc:
        raise BundleError(f"{out}: {exc}") from None
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
        with zipfile.ZipFile(tmp, "w") as z:
            z.writestr(_entry(MANIFEST_NAME), manifest_bytes)
            z.writestr(_entry(SIGNATURE_NAME), json.dumps(signature, indent=1))
            for name, data in sorted(files.items()):
                z.writestr(_entry(name), data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return parsed


# ---------------------------------------------------------------------------------------------
# Reading


class BundleFiles(Mapping[str, bytes]):
    """The files of a verified bundle, read from the zip when first asked for.

    :func:`read_bundle` has already checked every file against the signed manifest; the bytes
    are hashed again when read, so a bundle file changed on disk since then is refused, not used.
    """

    def __init__(self, path: Path, manifest: BundleManifest) -> None:
        self._path = path
        self._manifest = manifest
        self._cache: dict[str, bytes] = {}

    def __getitem__(self, name: str) -> bytes:
        if name not in self._manifest.files:
            raise KeyError(name)
        data = self._cache.get(name)
        if data is None:
            with _open_zip(self._path) as z:
                data = _verified_entry(z, self._path, self._manifest, name, keep=True, again=True)
            self._cache[name] = data
        return data

    def __contains__(self, name: object) -> bool:  # Mapping's would read the file to answer
        return name in self._manifest.files

    def __iter__(self) -> Iterator[str]:
        return iter(self._manifest.files)

    def __len__(self) -> int:
        return len(self._manifest.files)

    @property
    def loaded(self) -> frozenset[str]:
        """The files read so far (held in memory)."""
        return frozenset(self._cache)

    def __repr__(self) -> str:
        return f"BundleFiles({self._path}, {len(self)} files, {len(self._cache)} read)"


@dataclass
class Bundle:
    """A verified bundle: its manifest and its files (read lazily, hash-checked again when read)."""

    path: Path
    manifest: BundleManifest
    key_id: str
    files: Mapping[str, bytes] = field(repr=False)

    def read(self, name: str) -> bytes:
        try:
            return self.files[name]
        except KeyError:
            raise BundleError(f"{self.path}: no file {name!r} in the bundle") from None

    def artifact_bytes(self, artifact: str) -> bytes:
        return self.read(self.manifest.artifact(artifact).file)

    def reference_vectors(self, artifact: str) -> dict[str, Any]:
        """The artifact's reference inputs and expected outputs (npz arrays by key)."""
        import io

        import numpy as np

        entry = self.manifest.artifact(artifact)
        if entry.reference is None:
            raise BundleError(f"{self.path}: artifact {artifact!r} has no reference vectors")
        try:
            with np.load(io.BytesIO(self.read(entry.reference)), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{self.path}: {entry.reference} is not a readable npz ({exc})") from None


# What a damaged or hostile zip can raise while being read: all become one BundleError line.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    zlib.error,  # corrupt deflate stream
    NotImplementedError,  # unsupported compression method
    RuntimeError,  # encrypted entry
    ValueError,
    IndexError,  # zipfile's own parsing of hostile headers (fuzzing found ZipInfo.is_dir on an empty name)
)


@contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    try:
        with zipfile.ZipFile(path) as z:
            yield z
    except BundleError:
        raise
    except _ZIP_ERRORS as exc:
        raise BundleError(f"{path}: not a readable bundle ({exc})") from None


def _read_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, limit: int) -> bytes:
    if info.file_size > limit:
        raise BundleError(
            f"{path}: {info.filename} claims {info.file_size} bytes, more than the {limit} allowed"
        )
    data = z.read(info)
    if len(data) != info.file_size:  # pragma: no cover - zipfile checks this itself
        raise BundleError(f"{path}: {info.filename} is truncated")
    return data


def _verified_entry(
    z: zipfile.ZipFile, path: Path, manifest: BundleManifest, name: str, *, keep: bool, again: bool = False
) -> bytes:
    """Stream one listed file, checking its size and SHA-256 against the manifest; its bytes if ``keep``."""
    meta = manifest.files[name]
    owner = _owner(manifest, name)
    since = " since it was verified" if again else ""
    try:
        info = z.getinfo(name)
    except KeyError:
        raise BundleError(
            f"{path}: {owner}{name} is listed in the manifest but missing from the bundle{since}"
        ) from None
    if info.file_size != meta.bytes:
        raise BundleError(
            f"{path}: {owner}{name} is {info.file_size} bytes, the manifest says {meta.bytes} "
            f"(tampered or corrupt{since})"
        )
    digest, chunks, size = hashlib.sha256(), [], 0
    with z.open(info) as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
            if size > meta.bytes:  # the header lied about the size: stop before inflating more
                break
            digest.update(chunk)
            if keep:
                chunks.append(chunk)
    if size != meta.bytes or digest.hexdigest() != meta.sha256:
        raise BundleError(
            f"{path}: {owner}{name} does not match its SHA-256 in the manifest (tampered or corrupt{since})"
        )
    return b"".join(chunks)


def read_bundle(path: Path, public_key: Ed25519PublicKey | Path | None = None) -> Bundle:
    """Open a bundle, verify its signature and every file's SHA-256; one clear line on any failure.

    ``public_key`` is the key, a keys folder or a PEM file (default: the keys folder). Files are
    hashed here without being kept; the returned :class:`Bundle` reads them when asked.
    """
    path = Path(path)
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle")
    with _open_zip(path) as z:
        if any(not i.filename for i in z.infolist()):
            raise BundleError(f"{path}: an entry of the zip has no name")
        infos = [i for i in z.infolist() if not i.filename.endswith("/")]
        names = [i.filename for i in infos]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise BundleError(f"{path}: {repeated[0]} appears twice in the zip")
        by_name = {i.filename: i for i in infos}
        if MANIFEST_NAME not in by_name or SIGNATURE_NAME not in by_name:
            raise BundleError(f"{path}: missing {MANIFEST_NAME} or {SIGNATURE_NAME}")
        manifest_bytes = _read_entry(z, by_name.pop(MANIFEST_NAME), path, 16 * 1024 * 1024)
        sig_bytes = _read_entry(z, by_name.pop(SIGNATURE_NAME), path, 64 * 1024)
        try:
            sig = json.loads(sig_bytes)
            signature = base64.b64decode(sig["signature"], validate=True)
        except (ValueError, KeyError, TypeError, RecursionError):
            raise BundleError(f"{path}: {SIGNATURE_NAME} is malformed") from None
        try:
            key.verify(signature, manifest_bytes)
        except InvalidSignature:
            signer = sig.get("key_id", "?")
            # same key id: the key is right and the contents changed since signing
            why = "the bundle was modified after signing" if signer == key_id(key) else f"signed by {signer}"
            raise BundleError(f"{path}: signature does not verify with key {key_id(key)} ({why})") from None
        try:
            manifest = parse_manifest(manifest_bytes, f"{path}:{MANIFEST_NAME}")
        except ManifestError as exc:
            raise BundleError(str(exc)) from None
        extra = sorted(set(by_name) - set(manifest.files))
        if extra:
            raise BundleError(f"{path}: {extra[0]} is in the bundle but not in the signed manifest")
        for name in manifest.files:
            if manifest.files[name].bytes > MAX_FILE_BYTES:
                raise BundleError(
                    f"{path}: {name} claims {manifest.files[name].bytes} bytes, "
                    f"more than the {MAX_FILE_BYTES} allowed"
                )
            _verified_entry(z, path, manifest, name, keep=False)
    return Bundle(path, manifest, str(sig.get("key_id", "")), BundleFiles(path, manifest))


def _owner(manifest: BundleManifest, name: str) -> str:
    """'artifact 'k0': ' where ``name`` belongs to an artifact, for error messages."""
    for a in manifest.artifacts:
        if a.file == name:
            return f"artifact {a.name!r}: "
        if a.reference == name:
            return f"reference vectors of {a.name!r}: "
    return ""
