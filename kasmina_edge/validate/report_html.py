"""The validation report as one self-contained HTML file (plots inlined as base64 PNG) and as JSON; both are
written atomically and signed (``report_signing``) with the bundle keys."""

from __future__ import annotations

import html
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kasmina_edge.validate.certify import SCOPE
from kasmina_edge.validate.result import plain

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;
vertical-align:top;font-size:.9em}th{background:#f3f3f3}.pass{color:#17702a;font-weight:bold}
.fail{color:#b00020;font-weight:bold}.skipped{color:#777}code{font-size:.85em}img{max-width:100%}
.scope{background:#fff8e1;padding:.6em;border-left:4px solid #f0b400}"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _criteria(c: dict[str, Any]) -> str:
    return "<br>".join(f"<code>{_e(k)} = {_e(json.dumps(v))}</code>" for k, v in c.items())


def _stages(doc: dict[str, Any]) -> str:
    rows = []
    for s in doc["stages"]:
        fails = "".join(f"<li>{_e(f)}</li>" for f in s["failures"])
        rows.append(f"<tr><td>{s['index']}</td><td>{_e(s['name'])}</td><td class='{s['status']}'>{s['status']}</td>"
                    f"<td>{_e(s['reason'])}{'<ul>' + fails + '</ul>' if fails else ''}</td>"
                    f"<td>{_criteria(s['criteria'])}</td><td>{s['seconds']:.1f} s</td></tr>")
    return ("<table><tr><th>#</th><th>stage</th><th>result</th><th>why</th><th>pass criteria (plan)</th>"
            "<th>time</th></tr>" + "".join(rows) + "</table>")


def _checks(doc: dict[str, Any]) -> str:
    cert = next((s for s in doc["stages"] if s["name"] == "certification"), None)
    checks = (cert or {}).get("metrics", {}).get("checks", [])
    if not checks:
        return "<p>certification not run</p>"
    rows = "".join(f"<tr><td>{_e(c['title'])}</td><td>{'<br>'.join(_e(r) for r in c['requirements'])}</td>"
                   f"<td class='{c['status']}'>{c['status']}</td><td>{_e(c['evidence'])}</td></tr>" for c in checks)
    return "<table><tr><th>check</th><th>requirement</th><th>result</th><th>evidence</th></tr>" + rows + "</table>"


def _pct(v: Any) -> str:
    return "-" if not isinstance(v, int | float) or v != v else f"{100 * v:.1f}"


def _accuracy_tables(doc: dict[str, Any]) -> str:
    acc = next((s for s in doc["stages"] if s["name"] == "accuracy" and s["metrics"]), None)
    if acc is None:
        return ""
    m = acc["metrics"]
    head = ("<tr><th>record</th><th>beats</th><th>QRS Se / +P</th>" +
            "".join(f"<th>{c} Se / +P (n)</th>" for c in "NSVF") + "<th>macro-F1</th></tr>")

    def row(r: dict[str, Any], label: str | None = None) -> str:
        cells = "".join(f"<td>{_pct(r[c]['se'])} / {_pct(r[c]['ppv'])} ({r[c]['n']})</td>" for c in "NSVF")
        return (f"<tr><td>{_e(label or r['name'])}</td><td>{r['beats']:,}</td><td>{_pct(r['qrs_se'])} / "
                f"{_pct(r['qrs_ppv'])}</td>{cells}<td><b>{_pct(r['macro_f1'])}</b></td></tr>")

    rows = "".join(row(r) for r in m["records"]) + row(m["device_gross"], "device, gross") + row(
        m["base_gross"], "base alone, gross")
    kern = "".join(f"<tr><td>{_e(k)}</td><td>{_e(', '.join(v.get('kernels', [k])))}</td><td>{_pct(v['macro_f1'])}</td>"
                   f"<td>{100 * v['drop']:+.1f}</td></tr>" for k, v in m["kernels_forced"].items())
    out = f"<h3>accuracy (%)</h3><table>{head}{rows}</table>"
    if kern:
        out += ("<table><tr><th>forced live</th><th>kernels</th><th>gross macro-F1 %</th><th>points lost vs base</th>"
                f"</tr>{kern}</table>")
    return out


def _robustness_table(doc: dict[str, Any]) -> str:
    rob = next((s for s in doc["stages"] if s["name"] == "robustness" and s["metrics"]), None)
    if rob is None:
        return ""
    rows = "".join(f"<tr><td>{_e(c['condition'])}</td><td>{_pct(c['base_macro_f1'])}</td><td>"
                   f"{_pct(c['device_macro_f1'])}</td><td>{100 * c['loss']:+.1f}</td></tr>"
                   for c in rob["metrics"]["conditions"])
    return ("<h3>robustness (gross macro-F1 %)</h3><table><tr><th>condition</th><th>base alone</th>"
            f"<th>base + seeds</th><th>points lost</th></tr>{rows}</table>")


def _plots(figures: dict[str, Any], budget_s: float) -> list[tuple[str, str]]:
    from kasmina_edge.validate import plots

    out: list[tuple[str, str]] = []
    if "confusion" in figures:
        out.append(("confusion matrix", plots.confusion(figures["confusion"]["matrix"], figures["confusion"]["name"])))
    if figures.get("per_record"):
        out.append(("per record", plots.per_record(figures["per_record"])))
    if figures.get("host_beat_latency_s") or figures.get("device_beat_latency_s"):
        out.append(("latency", plots.latency(figures.get("host_beat_latency_s", []),
                                             figures.get("device_beat_latency_s", []), budget_s)))
    if "transitions" in figures or "faults" in figures:
        out.append(("lifecycle timeline", plots.timeline(figures.get("transitions", []), figures.get("faults", []))))
    return out


def render(doc: dict[str, Any], figures: dict[str, Any], budget_s: float) -> str:
    verdict = "PASS" if doc["passed"] else "FAIL"
    imgs = "".join(f"<h3>{_e(t)}</h3><img alt='{_e(t)}' src='data:image/png;base64,{b64}'>"
                   for t, b64 in _plots(figures, budget_s))
    b = doc["bundle"]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>validation of {_e(b['path'])}</title>"
            f"<style>{STYLE}</style></head><body><h1>Validation: <span class='{'pass' if doc['passed'] else 'fail'}'>"
            f"{verdict}</span></h1><p>bundle <code>{_e(b['path'])}</code> ({_e(b.get('bundle_id'))}), plan "
            f"<code>{_e(doc['plan']['source'])}</code> ({_e(doc['plan']['schema'])} v{doc['plan']['version']}), "
            f"records: {_e(', '.join(doc['records']))}; {_e(doc['created'])}, kasmina-edge {_e(doc['kasmina_edge'])}"
            f"</p><h2>Stages</h2>{_stages(doc)}<h2>Figures</h2>{_accuracy_tables(doc)}{_robustness_table(doc)}"
            f"<h2>Plots</h2>{imgs or '<p>no plots (no stage produced data)</p>'}"
            f"<h2>Compliance checks</h2><p class='scope'>{_e(SCOPE)}</p>{_checks(doc)}"
            "<p>Signed with the bundle keys: the <code>.sig</code> file beside this report names the SHA-256 of this "
            "file and of the JSON report (<code>kasmina-edge validate --verify-report FILE.sig</code>).</p>"
            "</body></html>")


def document(run: Any, ctx: Any) -> dict[str, Any]:
    from kasmina_edge import __version__

    b = ctx.bundle
    return {
        "format": "kasmina-validate-report/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kasmina_edge": __version__,
        "bundle": {"path": str(ctx.bundle_path), "bundle_id": b.manifest.bundle_id if b else None,
                   "key_id": b.key_id if b else None, "target": b.manifest.target if b else None},
        "plan": {"source": ctx.plan.source, "schema": ctx.plan.plan_schema, "version": ctx.plan.version},
        "records": [r.name for r in ctx.records],
        "scope": SCOPE,
        **run.to_dict(),
    }


def _atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is an ordinary file to share
    os.replace(tmp, path)


def write_report(doc: dict[str, Any], figures: dict[str, Any], html_path: Path, keys: Path | None,
                 budget_s: float) -> dict[str, Path]:
    """``html_path``, its JSON twin (same stem, .json) and the detached signature (``html_path`` + .sig)."""
    from kasmina_edge.validate.report_signing import sign_files

    json_path = html_path.with_suffix(".json")
    _atomic(json_path, json.dumps(plain(doc), indent=1, allow_nan=False))
    _atomic(html_path, render(doc, figures, budget_s))
    sig = sign_files([html_path, json_path], html_path.with_name(html_path.name + ".sig"), keys)
    return {"html": html_path, "json": json_path, "sig": sig}
