"""Tables that read at 80 columns: measure a table's natural width, and fall back to a narrower layout
(fewer columns, or one block of field/value rows per entity) rather than cutting every figure to '98.…'."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table

_MEASURE = Console(width=10_000)


def natural_width(table: Table) -> int:
    """The width the table takes with room to spare (its widest cells on one line)."""
    return Measurement.get(_MEASURE, _MEASURE.options, table).maximum


def fits(table: Table, width: int) -> bool:
    return natural_width(table) <= width


def grid(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[RenderableType]],
    *,
    right: Sequence[str] = (),
    caption: str | None = None,
    wrap: bool = False,
) -> Table:
    """A plain table (no vertical rules, which cost three columns each); ``wrap``: cells after the first may
    wrap at spaces."""
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left", caption=caption,
              caption_justify="left")  # fmt: skip
    for i, h in enumerate(headers):
        t.add_column(h, justify="right" if h in right else "left", no_wrap=not (wrap and i), overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t


def adaptive(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[RenderableType]],
    *,
    width: int,
    right: Sequence[str] = (),
    caption: str | None = None,
) -> RenderableType:
    """One row per entity where that reads at ``width``; else one column per entity (up to four); else the
    columns in groups, each a table led by the entity column; else one block of ``field  value`` lines per
    entity. The first header names the entity."""
    wide = grid(title, headers, rows, right=right, caption=caption)
    if fits(wide, width) or not rows:
        return wide
    if len(rows) <= 4:
        transposed = grid(
            title, [headers[0], *(str(r[0]) for r in rows)],
            [[h, *(r[i] for r in rows)] for i, h in enumerate(headers) if i],
            right=[str(r[0]) for r in rows], caption=caption,
        )  # fmt: skip
        if fits(transposed, width):
            return transposed
    groups = _column_groups(title, headers, rows, width, right)
    if groups is not None and len(groups) <= 3:
        tables = []
        for n, group in enumerate(groups):
            cols = [abs(i) for i in group]  # negative: a column that wraps
            sub = grid(title if n == 0 else "", [headers[0], *(headers[i] for i in cols)],
                       [[r[0], *(r[i] for i in cols)] for r in rows], right=right,
                       caption=caption if n == len(groups) - 1 else None, wrap=group[0] < 0)  # fmt: skip
            tables.append(sub)
        return Group(*tables)
    stacked = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left", show_header=False,
                    caption=caption, caption_justify="left")  # fmt: skip
    stacked.add_column("field", no_wrap=True)
    stacked.add_column("value", overflow="fold")
    for r in rows:
        stacked.add_row(f"[bold]{headers[0]}[/]", r[0] if not isinstance(r[0], str) else f"[bold]{r[0]}[/]")
        for h, v in zip(headers[1:], r[1:], strict=True):
            stacked.add_row(f"  {h}", v)
        stacked.rows[-1].end_section = True
    return stacked


def _column_groups(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[RenderableType]], width: int, right: Sequence[str]
) -> list[list[int]] | None:
    """Columns 1.. split greedily into groups that each read at ``width`` beside column 0 (None: one doesn't)."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i in range(1, len(headers)):
        trial = [*current, i]
        t = grid(title, [headers[0], *(headers[j] for j in trial)], [[r[0], *(r[j] for j in trial)] for r in rows],
                 right=right)  # fmt: skip
        if fits(t, width):
            current = trial
            continue
        if current:
            groups.append(current)
        current = [i]
        t = grid(title, [headers[0], headers[i]], [[r[0], r[i]] for r in rows], right=right)
        if not fits(t, width):  # a long text column: its own group, wrapped, if its words fit
            wrapped = grid(title, [headers[0], headers[i]], [[r[0], r[i]] for r in rows], right=right, wrap=True)
            if Measurement.get(_MEASURE, _MEASURE.options, wrapped).minimum > width:
                return None
            groups.append([-i])
            current = []
    if current:
        groups.append(current)
    return groups


def reflow(table: Table, width: int) -> RenderableType:
    """A table built elsewhere (the profiler's, the build report's), laid out again by :func:`adaptive` when it
    does not read at ``width``: its columns and cells, one column or one block per row instead."""
    if fits(table, width) or not table.columns:
        return table
    headers = [" ".join(str(c.header).split()) or "-" for c in table.columns]
    cells = [list(c.cells) for c in table.columns]
    rows = [[col[i] if i < len(col) else "" for col in cells] for i in range(max(len(c) for c in cells))]
    title = table.title if isinstance(table.title, str) else str(table.title or "")
    caption = table.caption if isinstance(table.caption, str) else None
    right = [h for h, c in zip(headers, table.columns, strict=True) if c.justify == "right"]
    return adaptive(title, headers, rows, width=width, right=right, caption=caption)


class FitToWidth:
    """A console stand-in for code that prints its own tables: each table too wide for the console is
    reflowed (see :func:`reflow`); everything else goes through as it is."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def print(self, *objects: object, **kwargs: object) -> None:
        self._console.print(*(self._fit(o) for o in objects), **kwargs)  # type: ignore[arg-type]

    def _fit(self, obj: object) -> object:
        if isinstance(obj, Table):
            return reflow(obj, self._console.width)
        if isinstance(obj, Group):
            return Group(*(self._fit(r) for r in obj.renderables))  # type: ignore[arg-type]
        return obj

    def __getattr__(self, name: str) -> object:
        return getattr(self._console, name)
