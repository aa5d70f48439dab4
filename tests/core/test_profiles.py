"""Item 5: every number in profiles/ carries its source and kind as data; `profiles show --json` prints it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from kasmina_edge.core import catalog
from kasmina_edge.core.profiles import CatalogError, NumberSource, estimated, numbers, source_of

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted((REPO / "profiles").glob("*/*.toml"))
KEY = re.compile(r"^([A-Za-z0-9_.-]+)\s*=\s*[^#]*#\s*(.*)$")


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_number_has_a_source_entry(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    sources = {k: NumberSource.model_validate(v) for k, v in data["sources"].items()}
    missing = [p for p in numbers(data) if source_of(sources, p) is None]
    assert missing == []
    assert {s.kind for s in sources.values()} <= {"measured", "published", "estimated", "derived"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_source_entries_say_what_the_inline_comments_say(path: Path) -> None:
    """The [sources] table is the data; the inline comments are kept for readers and must not drift from it."""
    text = path.read_text(encoding="utf-8")
    sources = tomllib.loads(text)["sources"]
    table: str | None = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[["):
            table = None  # array tables: checked by the loader's completeness rule, not line by line
        elif s.startswith("["):
            table = s.strip("[]")
            if table == "sources":
                break
        elif table is not None and (m := KEY.match(s)):
            key = f"{table}.{m.group(1)}" if table else m.group(1)
            assert sources[key]["source"] == m.group(2).strip(), key


def test_estimates_are_marked_and_data_rates_carry_their_table(tmp_path: Path) -> None:
    mcu = catalog.hardware("stm32h743")
    assert source_of(mcu.sources, "clock_hz").kind == "published"  # type: ignore[union-attr]
    assert "efficiency" in estimated(mcu) and "clock_hz" not in estimated(mcu)
    dr0 = catalog.network("lorawan-us915-dr0")
    src = source_of(dr0.sources, "data_rate.max_payload_bytes")
    assert src is not None and src.kind == "published" and "RP002" in src.source


def test_a_stale_or_missing_source_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "profiles" / "hardware"
    folder.mkdir(parents=True)
    text = (REPO / "profiles" / "hardware" / "stm32h743.toml").read_text()
    (folder / "stm32h743.toml").write_text(text.replace('"clock_hz" = {', '"clock_mhz" = {'))
    with pytest.raises(CatalogError, match=r"field 'sources': 'clock_mhz' names no field"):
        catalog.hardware("stm32h743", tmp_path)
