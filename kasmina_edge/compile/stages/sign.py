"""Stage 12, sign: the bundle signed and written with the contracts' writer (nothing written half), its
version recorded in the keys folder; the build report travels inside as report.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kasmina_edge.compile.report import BuildReport
    from kasmina_edge.compile.stages.package import BundleContents
    from kasmina_edge.compile.stages.request import BuildRequest


def signing_key(keys: Path | None) -> Any:
    """The private key from ``keys`` (or the default keys folder); a SigningKeyError names what to run."""
    from kasmina_edge.contracts.bundle import load_private_key

    return load_private_key(keys)


def sign_and_write(report: BuildReport, req: BuildRequest, contents: BundleContents, key: Any) -> Path:
    """Sign and write the bundle with the contracts' writer; the report travels inside as report.json."""
    from kasmina_edge.contracts.bundle import next_version, record_signed_version, write_bundle

    out = req.out_path()
    manifest = contents.manifest
    version = req.version if req.version is not None else next_version(str(manifest["target"]), req.keys)
    files = dict(contents.files)
    report.bundle = str(out)
    report.signed = True
    manifest = {**manifest, "pending": list(report.pending), "version": version}
    report_json = json.dumps(report.to_dict(), indent=2, default=str).encode()
    files["report.json"] = report_json
    manifest["artifacts"] = [
        *manifest["artifacts"],
        {
            "name": "report",
            "kind": "report",
            "format": "json",
            "file": "report.json",
            "sha256": hashlib.sha256(report_json).hexdigest(),
            "bytes": len(report_json),
        },
    ]
    signed = write_bundle(out, manifest, files, keys=key)
    try:
        record_signed_version(signed.target, signed.version, signed.bundle_id, req.keys, kind=signed.kind)
    except OSError as exc:  # a read-only keys folder still signs; the next default version may then repeat
        report.notes.append(
            f"version {signed.version} not recorded in the keys folder ({exc}): pass --version"
        )
    report.bundle_bytes = out.stat().st_size
    report.notes.append(f"version {signed.version} (devices refuse it once they run this version or newer)")
    report.notes.append(f"bundle id {signed.bundle_id}")
    return out
