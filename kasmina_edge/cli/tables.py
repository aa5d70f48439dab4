"""Tables that read at 80 columns: measure a table's natural width, and fall back to a narrower layout
(fewer columns, or one block of field/value rows per entity) rather than cutting every figure to '98.…'."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

_MEASURE = Console(width=10_000)


def natural_width(table: Table) -> int:
    """The width the table takes with room to spare (its widest cells on one line)."""
    return Measurement.get(_MEASURE, _MEASURE.options, table).maximum


def fits(table: Table, width: int) -> bool:
    return natural_width(table) <= width


def grid(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[str] = (), caption: str | None = None
) -> Table:
    """A plain table (no vertical rules, which cost three columns each)."""
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left", caption=caption,
              caption_justify="left")  # fmt: skip
    for h in headers:
        t.add_column(h, justify="right" if h in right else "left", no_wrap=True)
    for r in rows:
        t.add_row(*r)
    return t


def adaptive(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    right: Sequence[str] = (),
    caption: str | None = None,
) -> Table:
    """One row per entity when that fits ``width``; else one column per entity (few entities); else one block
    of ``field  value`` lines per entity. The first header names the entity."""
    wide = grid(title, headers, rows, right=right, caption=caption)
    if fits(wide, width) or not rows:
        return wide
    transposed = grid(
        title, [headers[0], *(r[0] for r in rows)], [[h, *(r[i] for r in rows)] for i, h in enumerate(headers) if i],
        right=[r[0] for r in rows], caption=caption,
    )  # fmt: skip
    if fits(transposed, width):
        return transposed
    stacked = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left", show_header=False,
                    caption=caption, caption_justify="left")  # fmt: skip
    stacked.add_column("field", style="bold", no_wrap=True)
    stacked.add_column("value", overflow="fold")
    for r in rows:
        stacked.add_row(f"{headers[0]} {r[0]}", "")
        for h, v in zip(headers[1:], r[1:], strict=True):
            stacked.add_row(f"  {h}", v)
        stacked.rows[-1].end_section = True
    return stacked
