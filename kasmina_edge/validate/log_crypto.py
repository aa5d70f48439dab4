"""Logs sealed at rest with AES-256-GCM (``cryptography``'s AESGCM): one JSON envelope per file.

The envelope names its algorithm and key id, so ``certify`` can tell a sealed log from a plain one without the
key, and ``open_log`` proves it opens with it. The key is 32 random bytes in a file of mode 0600.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError

ALGORITHM = "AES-256-GCM"
SUFFIX = ".enc"


class SealError(KasminaError):
    """A sealed log that does not open (wrong key, altered, not an envelope)."""


def load_or_create_key(path: Path) -> bytes:
    if path.exists():
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(key) != 32:
            raise SealError(f"{path}: a log key is 32 bytes (AES-256), this one is {len(key)}")
        return key
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".partial"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.hex() + "\n")
    os.replace(path.with_name(path.name + ".partial"), path)
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"kasmina-log-key|" + key).hexdigest()[:16]


def is_envelope(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("enc") == ALGORITHM and {"iv", "ciphertext"} <= obj.keys()


def seal_file(path: Path, key: bytes, *, remove_plain: bool = True) -> Path:
    """``path`` sealed into ``path.enc`` (written atomically); the plain file removed."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    iv = secrets.token_bytes(12)
    aad = path.name.encode()
    blob = AESGCM(key).encrypt(iv, path.read_bytes(), aad)
    env = {"enc": ALGORITHM, "kid": key_id(key), "name": path.name, "iv": iv.hex(), "ciphertext": blob.hex()}
    out = path.with_name(path.name + SUFFIX)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(env), encoding="utf-8")
    os.replace(tmp, out)
    if remove_plain:
        path.unlink()
    return out


def open_log(path: Path, key: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        env = json.loads(path.read_text(encoding="utf-8"))
        if not is_envelope(env):
            raise ValueError("not an envelope")
        return AESGCM(key).decrypt(bytes.fromhex(env["iv"]), bytes.fromhex(env["ciphertext"]), env["name"].encode())
    except (InvalidTag, ValueError, KeyError, TypeError) as exc:
        raise SealError(f"{path}: does not open with this key ({type(exc).__name__})") from None
