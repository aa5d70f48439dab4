"""The layers of the package: every import of every module (lazy ones inside functions too) points down.

``contracts`` at the ground, the torch-free ``core`` on it, then the ECG front end, the device side
(runtime, link, profiler) and the host side (host, compile), the emulator above the device side, the CLI
on top. The table below is the one in the README's layout section; a package missing from it fails here,
as does any arrow it does not list (read with ``ast``: no module is imported, so nothing hides behind an
import error or a lazy import).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import kasmina_edge

REPO = Path(kasmina_edge.__file__).resolve().parent.parent
ROOTS = ("kasmina_edge", "firmware_sim")

CONTRACTS, CORE, ECG = "kasmina_edge.contracts", "kasmina_edge.core", "kasmina_edge.ecg"
RUNTIME, NET, PROFILER = "kasmina_edge.runtime", "kasmina_edge.net", "kasmina_edge.profiler"
HOST, COMPILE, CLI, EMULATOR = "kasmina_edge.host", "kasmina_edge.compile", "kasmina_edge.cli", "firmware_sim"
VALIDATE = "kasmina_edge.validate"
DASHBOARD = "kasmina_edge.dashboard"
CURRICULUM = "kasmina_edge.curriculum"
TORCH = "torch"  # not a layer: the host extra, which only the host side may import (lazily or not)

# package -> what it may import (besides itself, the standard library, third-party packages, and the bare
# ``kasmina_edge`` package root, which holds only ``__version__``).
ALLOWED: dict[str, frozenset[str]] = {
    CONTRACTS: frozenset(),
    CORE: frozenset({CONTRACTS}),
    ECG: frozenset({CONTRACTS, CORE}),
    RUNTIME: frozenset({CONTRACTS, CORE, ECG}),
    NET: frozenset({CONTRACTS, CORE}),
    PROFILER: frozenset({CONTRACTS, CORE, RUNTIME}),
    HOST: frozenset({CONTRACTS, CORE, ECG, TORCH}),
    COMPILE: frozenset({CONTRACTS, CORE, ECG, HOST, TORCH}),
    EMULATOR: frozenset({CONTRACTS, CORE, ECG, RUNTIME, NET, PROFILER}),
    VALIDATE: frozenset({CONTRACTS, CORE, ECG, RUNTIME, NET, PROFILER, HOST, COMPILE, EMULATOR}),
    DASHBOARD: frozenset({CONTRACTS, CORE, ECG, RUNTIME, NET, PROFILER, HOST, COMPILE, EMULATOR}),
    # the curriculum trains (host), builds (compile) and runs on the emulator: a driver of everything below
    CURRICULUM: frozenset({CONTRACTS, CORE, ECG, RUNTIME, NET, PROFILER, HOST, COMPILE, EMULATOR, TORCH}),
    CLI: frozenset(
        {CONTRACTS, CORE, ECG, RUNTIME, NET, PROFILER, HOST, COMPILE, EMULATOR, VALIDATE, DASHBOARD, CURRICULUM, TORCH}
    ),
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(name: str, root: Path) -> str | None:
    """The layer a dotted name belongs to: ``kasmina_edge.X`` for a subpackage or module X, ``firmware_sim``,
    ``torch``; None for the bare package root, the standard library and third-party packages."""
    parts = name.split(".")
    if parts[0] == "firmware_sim":
        return EMULATOR
    if parts[0] == "torch":
        return TORCH
    if parts[0] != "kasmina_edge" or len(parts) == 1:
        return None
    below = root / "kasmina_edge" / parts[1]
    return f"kasmina_edge.{parts[1]}" if below.is_dir() or below.with_suffix(".py").is_file() else None


def _imported(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything a module imports; ``from P import x`` yields ``P.x`` (x may be a
    submodule), relative imports are resolved against ``module``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def violations(root: Path) -> list[str]:
    """Every import under ``root``'s packages that the table does not allow, as ``file:line: a -> b``."""
    found: list[str] = []
    for top in ROOTS:
        for path in sorted((root / top).rglob("*.py")):
            module = _module_name(path, root)
            own = _package(module, root)
            if own is None:
                continue  # the package root itself (kasmina_edge/__init__.py)
            if own not in ALLOWED:
                missing = f"package {own} has no row in the layer table"
                if missing not in found:
                    found.append(missing)
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for line, name in _imported(tree, module, path.name == "__init__.py"):
                target = _package(name, root)
                if target is not None and target != own and target not in ALLOWED[own]:
                    found.append(f"{path.relative_to(root)}:{line}: {own} -> {target} ({name})")
    return found


def test_every_import_points_down_the_layer_table() -> None:
    assert violations(REPO) == []


def test_every_package_has_a_row() -> None:
    packages = {f"kasmina_edge.{p.name}" for p in (REPO / "kasmina_edge").iterdir() if (p / "__init__.py").is_file()}
    assert packages | {EMULATOR} == set(ALLOWED)


def test_the_table_has_no_cycle() -> None:
    # Arrows only point down: following them from any package never comes back to it.
    def below(pkg: str, seen: frozenset[str]) -> None:
        for dep in ALLOWED.get(pkg, frozenset()):
            assert dep not in seen, f"cycle through {dep}"
            below(dep, seen | {dep})

    for pkg in ALLOWED:
        below(pkg, frozenset({pkg}))


def _plant(root: Path, files: dict[str, str]) -> Path:
    for top in ROOTS:
        (root / top).mkdir(parents=True, exist_ok=True)
        (root / top / "__init__.py").write_text("")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"kasmina_edge/core/bad.py": "from kasmina_edge.runtime.image import Image\n",
          "kasmina_edge/runtime/image.py": ""}, "kasmina_edge/core/bad.py:1: kasmina_edge.core -> kasmina_edge.runtime"),
        ({"kasmina_edge/runtime/lazy.py": "def f():\n    import torch\n"},
         "kasmina_edge/runtime/lazy.py:2: kasmina_edge.runtime -> torch"),
        ({"kasmina_edge/host/up.py": "from ..runtime import engine\n", "kasmina_edge/runtime/engine.py": ""},
         "kasmina_edge/host/up.py:1: kasmina_edge.host -> kasmina_edge.runtime"),
        ({"kasmina_edge/net/side.py": "from kasmina_edge import profiler\n", "kasmina_edge/profiler/__init__.py": ""},
         "kasmina_edge/net/side.py:1: kasmina_edge.net -> kasmina_edge.profiler"),
        ({"firmware_sim/up.py": "import kasmina_edge.cli.app\n", "kasmina_edge/cli/app.py": ""},
         "firmware_sim/up.py:1: firmware_sim -> kasmina_edge.cli"),
        ({"kasmina_edge/newpkg/app.py": "x = 1\n"}, "package kasmina_edge.newpkg has no row"),
    ],
)  # fmt: skip
def test_a_planted_violation_is_found(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = violations(_plant(tmp_path, files))
    assert len(found) == 1 and expected in found[0], found


def test_allowed_arrows_and_the_package_root_pass(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "kasmina_edge/runtime/ok.py": "import numpy\nfrom kasmina_edge import __version__\n"
                                      "from kasmina_edge.core.tensors import TensorInfo\nfrom . import ok\n",
        "kasmina_edge/core/tensors.py": "from kasmina_edge.contracts.errors import KasminaError\n",
        "kasmina_edge/contracts/errors.py": "",
        "kasmina_edge/cli/app.py": "import torch\nimport firmware_sim.device\n",
    })  # fmt: skip
    assert violations(root) == []
