"""Size limits (issue 18): no module over 600 lines, no function over 120 lines in kasmina_edge/, firmware_sim/
and tools/.

Read with ``ast`` (nothing is imported). A module or function named in ``BEING_SPLIT`` is still over the limit
and is being split (issue 18); the list may only shrink: an entry that is back under its limit fails too, so it
is removed as soon as its split lands.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import kasmina_edge

REPO = Path(kasmina_edge.__file__).resolve().parent.parent
ROOTS = ("kasmina_edge", "firmware_sim", "tools")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120

# being split (issue 18): "path" for a module, "path::function" for a function; shrink it, never grow it.
BEING_SPLIT: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Oversize:
    key: str  # "path" or "path::function"
    lines: int
    limit: int

    def __str__(self) -> str:
        return f"{self.key}: {self.lines} lines (limit {self.limit})"


def oversize(root: Path, paths: tuple[str, ...] = ROOTS) -> list[Oversize]:
    """Every module over MAX_MODULE_LINES and every function (methods and nested ones too) over
    MAX_FUNCTION_LINES under ``root/<path>`` for each path, keyed by the path relative to ``root``."""
    found: list[Oversize] = []
    for top in paths:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            source = path.read_text(encoding="utf-8")
            n_lines = len(source.splitlines())
            if n_lines > MAX_MODULE_LINES:
                found.append(Oversize(rel, n_lines, MAX_MODULE_LINES))
            for node in ast.walk(ast.parse(source, filename=rel)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    # decorators count: they are part of what a reader has to hold
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    length = (node.end_lineno or node.lineno) - first + 1
                    if length > MAX_FUNCTION_LINES:
                        found.append(Oversize(f"{rel}::{node.name}", length, MAX_FUNCTION_LINES))
    return found


def test_no_oversize_code_outside_the_list() -> None:
    found = oversize(REPO)
    new = [str(o) for o in found if o.key not in BEING_SPLIT]
    assert not new, "over the size limit (split by concept):\n" + "\n".join(new)


def test_the_list_only_names_code_still_over_the_limit() -> None:
    still = {o.key for o in oversize(REPO)}
    done = sorted(BEING_SPLIT - still)
    assert not done, "back under the limit, remove from BEING_SPLIT: " + ", ".join(done)


def test_a_planted_long_module_and_function_are_found(tmp_path: Path) -> None:
    pkg = tmp_path / "kasmina_edge"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))  # def line + 120 = 121 lines
    (pkg / "long_function.py").write_text(f"def too_long() -> None:\n{body}\n\n\ndef short() -> None:\n    pass\n")
    (pkg / "long_module.py").write_text("\n".join(f"X{i} = {i}" for i in range(MAX_MODULE_LINES + 1)) + "\n")
    fits = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))  # def line + 119 = 120 lines
    (pkg / "at_limit.py").write_text(f"class A:\n    def fits(self) -> None:\n{fits}\n")
    found = {o.key: o.lines for o in oversize(tmp_path, ("kasmina_edge",))}
    assert found == {
        "kasmina_edge/long_function.py::too_long": MAX_FUNCTION_LINES + 1,
        "kasmina_edge/long_module.py": MAX_MODULE_LINES + 1,
    }
