"""The report signed with the bundle keys (Ed25519, ``contracts.bundle``'s keys folder): a detached signature
file naming each report file's SHA-256, so the report travels with the bundle and anyone with the public key
can check that neither file changed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError

SIG_FORMAT = "kasmina-validate-report-sig/1"


class ReportSignatureError(KasminaError):
    """A report whose detached signature does not verify."""


def _payload(files: dict[str, str], key: str) -> bytes:
    return json.dumps({"format": SIG_FORMAT, "key_id": key, "files": files}, sort_keys=True,
                      separators=(",", ":")).encode()


def sign_files(paths: list[Path], out: Path, keys: Path | None = None) -> Path:
    from kasmina_edge.contracts.bundle import key_id, load_private_key

    private = load_private_key(keys)
    kid = key_id(private.public_key())
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    sig = {"format": SIG_FORMAT, "alg": "Ed25519", "key_id": kid, "files": files,
           "signature": base64.b64encode(private.sign(_payload(files, kid))).decode()}
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(sig, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def verify_files(sig_path: Path, keys: Path | None = None) -> dict[str, Any]:
    """Check the signature and every named file beside it; returns the signature record."""
    from cryptography.exceptions import InvalidSignature

    from kasmina_edge.contracts.bundle import load_public_key

    try:
        sig = json.loads(sig_path.read_text(encoding="utf-8"))
        files, kid, raw = dict(sig["files"]), str(sig["key_id"]), base64.b64decode(sig["signature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportSignatureError(f"{sig_path}: not a report signature ({exc})") from None
    try:
        load_public_key(keys).verify(raw, _payload(files, kid))
    except InvalidSignature:
        raise ReportSignatureError(f"{sig_path}: signature does not verify with these keys") from None
    for name, digest in files.items():
        path = sig_path.parent / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ReportSignatureError(f"{path}: changed since the report was signed")
    return dict(sig)
