"""--data wfdb:DIR[,DIR] and --records: every annotated record of each folder, or the ones named."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasmina_edge.contracts.errors import KasminaError
from kasmina_edge.validate.records import resolve_records


def _touch(folder: Path, name: str, annotated: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.hea").write_text("")
    if annotated:
        (folder / f"{name}.atr").write_bytes(b"")


def test_folders_and_record_paths_and_names(tmp_path: Path) -> None:
    _touch(tmp_path / "a", "100")
    _touch(tmp_path / "a", "101")
    _touch(tmp_path / "a", "noise", annotated=False)  # no beat annotations: not a record to score
    _touch(tmp_path / "b", "200")
    refs = resolve_records(f"wfdb:{tmp_path / 'a'},{tmp_path / 'b'}")
    assert [r.name for r in refs] == ["100", "101", "200"]
    assert [r.name for r in resolve_records(f"wfdb:{tmp_path / 'a'},{tmp_path / 'b'}", "200,100")] == ["200", "100"]
    assert [r.base for r in resolve_records(f"wfdb:{tmp_path / 'b' / '200'}")] == [tmp_path / "b" / "200"]


@pytest.mark.parametrize(("data", "names", "message"), [
    ("csv:x.csv", None, "give wfdb:DIR[,DIR]"),
    ("wfdb:{tmp}/none", None, "no such folder or WFDB record"),
    ("wfdb:{tmp}/empty", None, "no annotated WFDB record"),
    ("wfdb:{tmp}/a", "100,999", "--records: 999 not among the --data records"),
])  # fmt: skip
def test_what_is_missing_is_named(tmp_path: Path, data: str, names: str | None, message: str) -> None:
    _touch(tmp_path / "a", "100")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KasminaError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_records(data.format(tmp=tmp_path), names)
