"""The checks on trust: bundles and commands signed and verified, audit chains intact, keys kept private."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.validate.check_result import CheckResult, check
from kasmina_edge.validate.log_scan import audit_logs, log_files

PRIVATE_SUFFIXES = (".key",)
AUDIT_KEY_NAMES = ("audit.key", "operator-audit.key")


def _entries(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def signed_check(bundle: Path | None, keys: Path | None, logs: Path | None) -> CheckResult:
    """The bundle (and every bundle among the logs) verifies; every command a device accepted was a signed
    envelope (nonce, issue time) that an operator's log says was sent, where an operator's log is there."""
    from kasmina_edge.contracts.bundle import read_bundle

    files = log_files(logs)
    bundles = ([bundle] if bundle is not None else []) + (sorted(logs.rglob("*.kedge")) if logs and logs.is_dir() else [])
    problems: list[str] = []
    good: list[str] = []
    for b in bundles:
        try:
            good.append(f"{b.name}: signed by {read_bundle(b, keys).key_id}")
        except KasminaError as exc:
            problems.append(f"bundle {b.name} does not verify: {exc}")
    accepted: list[tuple[Path, dict[str, Any]]] = []
    sent: set[str] = set()
    for log in audit_logs(files):
        for e in _entries(log):
            if e.get("event") == "accepted":
                accepted.append((log, e))
            elif e.get("event") == "sent" and e.get("nonce"):
                sent.add(str(e["nonce"]))
    for log, e in accepted:
        if not e.get("nonce") or e.get("issued_at") is None:
            problems.append(f"{log.name} entry {e.get('i')}: command {e.get('name')!r} accepted without a signed "
                            "envelope (no nonce or issue time)")
        elif sent and str(e["nonce"]) not in sent:
            problems.append(f"{log.name} entry {e.get('i')}: command {e.get('name')!r} accepted, but no operator "
                            "log signed and sent it")
    if not bundles and not accepted:
        return check("signed", "skipped", "no bundle and no accepted command to check")
    if problems:
        return check("signed", "fail", problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
                     problems)
    return check("signed", "pass", f"{len(bundles)} bundle(s) verify, {len(accepted)} accepted command(s) were "
                 f"signed envelopes{' the operator sent' if sent else ''}", good)


def _audit_key(log: Path, extra: dict[str, Path]) -> bytes | None:
    from kasmina_edge.net.audit import read_key

    candidates = [extra.get(log.name), extra.get(str(log)), log.with_suffix(".key"),
                  *(log.parent / n for n in AUDIT_KEY_NAMES), *(log.parent / "secure" / n for n in AUDIT_KEY_NAMES)]
    for c in candidates:
        if c is not None and Path(c).exists():
            return read_key(Path(c))
    return None


def audit_chain_check(logs: Path | None, keys_by_log: dict[str, Path] | None = None) -> CheckResult:
    from kasmina_edge.net.audit import AuditError, verify_report

    found = audit_logs(log_files(logs))
    if not found:
        return check("audit-chain", "skipped", f"no audit log among the logs ({logs or 'no --logs'})")
    problems, good = [], []
    for log in found:
        try:
            key = _audit_key(log, keys_by_log or {})
            keyed = any(e.get("keyed") for e in _entries(log)[:1])
            if keyed and key is None:
                problems.append(f"{log}: keyed audit log without its key beside it (audit.key): cannot be checked")
                continue
            rep = verify_report(log, key)
            good.append(f"{log.name}: {rep.entries} entries" + (", signed head matches" if rep.head else ""))
        except AuditError as exc:
            problems.append(str(exc))
    if problems:
        return check("audit-chain", "fail", problems[0], problems)
    return check("audit-chain", "pass", f"{len(found)} audit log(s) verify: " + "; ".join(good[:3]), good)


def key_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            out += [f for f in p.rglob("*") if f.is_file() and (f.suffix in PRIVATE_SUFFIXES or "secure" in f.parts)]
    return sorted(set(out))


def keys_private_check(paths: list[Path]) -> CheckResult:
    files = key_files([p for p in paths if p.exists()])
    if not files:
        return check("keys-private", "skipped", "no key files found in " + ", ".join(str(p) for p in paths))
    open_to_world = [f for f in files if f.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH)]
    group = [f for f in files if f.stat().st_mode & stat.S_IRGRP]
    details = [f"{f}: mode {stat.S_IMODE(f.stat().st_mode):o}" for f in files]
    if open_to_world:
        f = open_to_world[0]
        return check("keys-private", "fail", f"{f} is world-readable (mode {stat.S_IMODE(f.stat().st_mode):o}; "
                     "chmod 600)", details)
    note = f"; {len(group)} group-readable" if group else ""
    return check("keys-private", "pass", f"{len(files)} key file(s), none world-readable{note}", details)
