"""A CycloneDX SBOM of the installed environment (``cyclonedx-python-lib``, the ``compliance`` extra), and the
licences of the data used, read from the data folders' READMEs."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from kasmina_edge.validate.check_result import CheckResult, check

LICENCE_LINE = re.compile(r"licen[cs]e[:\s]", re.IGNORECASE)


@dataclass(frozen=True)
class Sbom:
    path: Path
    components: int
    with_licence: int


def write_sbom(out: Path) -> Sbom:
    """Every installed distribution as a CycloneDX 1.5 library component (name, version, purl, licence)."""
    import importlib.metadata as md

    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from cyclonedx.output.json import JsonV1Dot5
    from packageurl import PackageURL

    from kasmina_edge import __version__

    bom = Bom()
    bom.metadata.component = Component(name="kasmina-edge", version=__version__, type=ComponentType.APPLICATION)
    seen: set[str] = set()
    licensed = 0
    for dist in sorted(md.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name, version = dist.metadata["Name"], dist.version
        if not name or name.lower() in seen:
            continue
        seen.add(name.lower())
        comp = Component(name=name, version=version, type=ComponentType.LIBRARY,
                         purl=PackageURL("pypi", name.lower(), version))
        expr = dist.metadata["License-Expression"]  # email.message semantics: None when absent
        short = dist.metadata["License"]
        if expr:
            comp.licenses.add(LicenseExpression(expr))
            licensed += 1
        elif short and len(short) <= 80 and "\n" not in short:
            comp.licenses.add(DisjunctiveLicense(name=short))
            licensed += 1
        bom.components.add(comp)
    with warnings.catch_warnings():  # "no dependency graph": installed distributions are listed, not their graph
        warnings.simplefilter("ignore", UserWarning)
        text = JsonV1Dot5(bom).output_as_string(indent=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    return Sbom(out, len(seen), licensed)


def sbom_check(out: Path | None) -> CheckResult:
    if out is None:
        return check("sbom", "skipped", "no SBOM path given")
    try:
        sbom = write_sbom(out)
    except ImportError as exc:
        return check("sbom", "fail", f"cyclonedx-python-lib is not installed (pip install kasmina-edge[compliance]): {exc}")
    if sbom.components == 0:
        return check("sbom", "fail", "the environment lists no installed distribution")
    return check("sbom", "pass", f"{sbom.path}: CycloneDX 1.5, {sbom.components} components "
                 f"({sbom.with_licence} with a declared licence)")


def licence_lines(folder: Path) -> list[str]:
    """The licence lines of ``folder``'s README (and the line after, where the sentence runs on)."""
    readme = next((p for p in (folder / "README.md", folder / "README", folder / "README.txt") if p.is_file()), None)
    if readme is None:
        return []
    lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()
    out = []
    for i, line in enumerate(lines):
        if LICENCE_LINE.search(line):
            text = line.strip()
            if not text.endswith(".") and i + 1 < len(lines) and lines[i + 1].strip():
                text += " " + lines[i + 1].strip()
            out.append(text)
    return out


def data_licences_check(folders: list[Path]) -> CheckResult:
    if not folders:
        return check("data-licences", "skipped", "no data folder named")
    found: list[str] = []
    missing: list[str] = []
    for folder in folders:
        lines = licence_lines(folder)
        (found if lines else missing).append(f"{folder.name}: {lines[0][:160]}" if lines else str(folder))
    if missing:
        return check("data-licences", "fail", f"no licence line in the README of {missing[0]}", found + missing)
    return check("data-licences", "pass", "; ".join(found), found)
