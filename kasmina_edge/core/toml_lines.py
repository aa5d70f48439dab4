"""Where a key of a TOML file is: the 1-based line of each table and key, as pydantic locations.

Hand-written: ``tomllib`` drops positions and no library in the base install keeps them. It understands
what the catalog's data files use (tables, arrays of tables, dotted keys, multi-line arrays) and is only
used to point at a line, so a construct it misreads costs a less precise line, never a wrong value.
"""

from __future__ import annotations

import re

Loc = tuple[str | int, ...]  # a pydantic location: keys, and indexes into arrays of tables


def dotted(loc: Loc) -> str:
    """('data_rates', 2, 'sf') -> 'data_rates[2].sf'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_KEYPART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEYPART}(?:\s*\.\s*{_KEYPART})*"
_ARRAY_TABLE_RE = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE_RE = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_KEY_RE = re.compile(rf"^\s*({_DOTTED})\s*=(.*)$")


def _key_parts(dotted_key: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in re.findall(_KEYPART, dotted_key))


def _open_brackets(value: str) -> int:
    """Net [ / { opened by a value (strings and comments skipped): > 0 means it continues on the next line."""
    depth, quote, i = 0, "", 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


def field_lines(text: str) -> dict[Loc, int]:
    """Map each table and key of a TOML text to its 1-based line, as pydantic locations (array tables indexed)."""
    lines: dict[Loc, int] = {}
    array_counts: dict[tuple[str, ...], int] = {}
    table: Loc = ()
    depth = 0
    in_multiline_string = False

    def resolve(parts: tuple[str, ...]) -> Loc:
        out: list[str | int] = []
        for n, part in enumerate(parts, start=1):
            out.append(part)
            if parts[:n] in array_counts:
                out.append(array_counts[parts[:n]] - 1)
        return tuple(out)

    for lineno, line in enumerate(text.splitlines(), start=1):
        if in_multiline_string:
            if line.count('"""') % 2 == 1:
                in_multiline_string = False
            continue
        if depth > 0:
            depth += _open_brackets(line)
            continue
        if match := _ARRAY_TABLE_RE.match(line):
            parts = _key_parts(match.group(1))
            array_counts[parts] = array_counts.get(parts, 0) + 1
            table = resolve(parts)
            lines.setdefault(table[:-1], lineno)
            lines[table] = lineno
        elif match := _TABLE_RE.match(line):
            table = resolve(_key_parts(match.group(1)))
            lines[table] = lineno
        elif match := _KEY_RE.match(line):
            parts = _key_parts(match.group(1))
            for n in range(1, len(parts) + 1):
                lines.setdefault(table + parts[:n], lineno)
            value = match.group(2)
            if value.count('"""') % 2 == 1:
                in_multiline_string = True
            else:
                depth = max(_open_brackets(value), 0)
    return lines


def line_of(loc: Loc, text: str) -> int:
    """The line of the deepest table or key on ``loc``'s path (line 1 when the file has none of it)."""
    lines = field_lines(text)
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1
