"""The records a validation runs on: ``--data wfdb:DIR[,DIR]`` (folders or record paths) and ``--records``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.ecg.types import DEFAULT_FS, Record


@dataclass(frozen=True)
class RecordRef:
    """One annotated WFDB record: its base path (no extension)."""

    base: Path

    @property
    def name(self) -> str:
        return self.base.name

    def read(self, fs: float = DEFAULT_FS) -> Record:
        from kasmina_edge.ecg.wfdb_io import read_wfdb

        rec = read_wfdb(self.base, fs=fs)
        if rec.beats is None or len(rec.beats) == 0:
            raise KasminaError(f"{self.base}: no reference beat annotations (a WFDB record needs its .atr file)")
        return rec


def _annotated(folder: Path) -> list[Path]:
    return sorted(h.with_suffix("") for h in folder.glob("*.hea") if h.with_suffix(".atr").exists())


def resolve_records(data: str, names: str | None = None) -> list[RecordRef]:
    """``wfdb:DIR[,DIR]`` (every annotated record in each folder, or a record path) filtered by ``names``
    (comma-separated record names); one line naming what is missing."""
    scheme, sep, rest = data.partition(":")
    if not sep or scheme != "wfdb" or not rest:
        raise KasminaError(f"--data {data!r}: give wfdb:DIR[,DIR] (folders of annotated WFDB records)")
    found: list[Path] = []
    for part in (p.strip() for p in rest.split(",")):
        if not part:
            continue
        path = Path(part)
        if path.is_dir():
            bases = _annotated(path)
            if not bases:
                raise KasminaError(f"--data {part}: no annotated WFDB record (NAME.hea with NAME.atr) in the folder")
            found.extend(bases)
        elif path.with_suffix(".hea").exists() or Path(part + ".hea").exists():
            found.append(Path(part))
        else:
            raise KasminaError(f"--data {part}: no such folder or WFDB record")
    if names:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        by_name = {b.name: b for b in found}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise KasminaError(f"--records: {', '.join(missing)} not among the --data records")
        found = [by_name[n] for n in wanted]
    if not found:
        raise KasminaError(f"--data {data!r}: no records to validate on")
    return [RecordRef(b) for b in found]
