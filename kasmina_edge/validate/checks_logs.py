"""The checks on logs: no raw ECG unless requested and encrypted; patient data sealed at rest."""

from __future__ import annotations

from pathlib import Path

from kasmina_edge.validate.check_result import CheckResult, check
from kasmina_edge.validate.log_crypto import SUFFIX
from kasmina_edge.validate.log_scan import log_files, plain_patient_data, raw_ecg


def raw_ecg_check(logs: Path | None) -> CheckResult:
    files = log_files(logs)
    if not files:
        return check("raw-ecg", "skipped", f"no logs to scan ({logs or 'no --logs'})")
    found = [f for p in files for f in raw_ecg(p)]
    if found:
        return check("raw-ecg", "fail", f"raw ECG in plain text: {found[0]}" +
                     (f" (+{len(found) - 1} more)" if len(found) > 1 else ""), [str(f) for f in found])
    return check("raw-ecg", "pass", f"{len(files)} log file(s) scanned: no plain raw ECG, encrypted strips only on request")


def logs_encrypted_check(logs: Path | None) -> CheckResult:
    files = log_files(logs)
    if not files:
        return check("logs-encrypted", "skipped", f"no logs to scan ({logs or 'no --logs'})")
    plain = [f for p in files if (f := plain_patient_data(p)) is not None]
    sealed = [p for p in files if p.name.endswith(SUFFIX)]
    if plain:
        return check("logs-encrypted", "fail", f"patient data not encrypted at rest: {plain[0]}" +
                     (f" (+{len(plain) - 1} more files)" if len(plain) > 1 else ""), [str(f) for f in plain])
    return check("logs-encrypted", "pass", f"{len(files)} log file(s): {len(sealed)} sealed (AES-256-GCM), "
                 "none with patient data in plain text")
