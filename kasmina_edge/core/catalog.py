"""The catalog: hardware profiles, network profiles and build targets, found and loaded from their TOML files.

The files live in a checkout's top-level ``profiles/`` and ``targets/`` (next to the package) or, once
installed from a wheel, inside the package as ``kasmina_edge/_data/{profiles,targets}``. Every loader takes
``data_dir`` (the folder that holds ``profiles/`` and ``targets/``) to read another copy. The models are in
:mod:`kasmina_edge.core.profiles`.

A file that does not validate raises :class:`CatalogError` with one line naming the file, the line
(:mod:`kasmina_edge.core.toml_lines`) and the field; an unknown name raises one line listing the known names.

Imports only the standard library, pydantic and ``kasmina_edge.contracts`` (devices load profiles too).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kasmina_edge.core.profiles import (
    NETWORK_KINDS,
    CatalogError,
    FieldProblem,
    HardwareProfile,
    IpLinkProfile,
    LoRaRegion,
    NetworkProfile,
    NumberSource,
    Target,
    numbers,
    source_of,
)
from kasmina_edge.core.toml_lines import Loc, dotted, line_of

_TOML_POSITION_RE = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")

# --------------------------------------------------------------------------------------------- data location


def default_data_dir() -> Path:
    """The checkout's top level when running from one, else the copy installed inside the package."""
    repo_root = Path(__file__).resolve().parents[2]  # kasmina_edge/core/catalog.py -> the checkout
    if (
        (repo_root / "pyproject.toml").is_file()
        and (repo_root / "profiles").is_dir()
        and (repo_root / "targets").is_dir()
    ):
        return repo_root
    return Path(str(resources.files("kasmina_edge").joinpath("_data")))


def _folder(data_dir: Path | None, *parts: str) -> Path:
    folder = (data_dir if data_dir is not None else default_data_dir()).joinpath(*parts)
    if not folder.is_dir():
        raise CatalogError(f"no {'/'.join(parts)} folder at {folder}")
    return folder



# --------------------------------------------------------------------------------------------- loading

_Model = TypeVar("_Model", bound=BaseModel)


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        position = re.search(r"at line (\d+)", str(exc))
        line = position.group(1) if position else str(text.count("\n") + 1)
        message = _TOML_POSITION_RE.sub("", str(exc))
        raise CatalogError(f"{path}:{line}: TOML syntax error: {message}") from None


def _problem(path: Path, text: str, loc: Loc, message: str) -> CatalogError:
    return CatalogError(f"{path}:{line_of(loc, text)}: field '{dotted(loc) or '(file)'}': {message}")


def _validate(model: type[_Model], data: dict[str, Any], text: str, path: Path) -> _Model:
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        # A misspelt key gives "extra" at its line and "missing" elsewhere: point at the misspelling.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            parent, key = tuple(first["loc"][:-1]), str(first["loc"][-1])
            missing = [
                str(e["loc"][-1]) for e in errors if e["type"] == "missing" and e["loc"][:-1] == parent
            ]
            close = difflib.get_close_matches(key, missing, n=1)
            message = f"unknown field (did you mean '{close[0]}'?)" if close else "unknown field"
        if first["type"] != "missing" and not isinstance(first.get("input"), dict | list):
            message += f" (got {first.get('input')!r:.60})"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        raise _problem(path, text, tuple(first["loc"]), message) from None
    except FieldProblem as exc:
        raise _problem(path, text, exc.loc, exc.problem) from None
    name = getattr(obj, "name", path.stem)
    if name != path.stem:
        raise _problem(path, text, ("name",), f"'{name}' must match the file name '{path.stem}'")
    return obj


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=256)
def _load_cached(path: Path, stamp: tuple[int, int], kind: str) -> Any:
    """Parse and validate one file; the (mtime, size) stamp in the key makes an edited file load afresh."""
    data, text = _read_toml(path)
    if kind == "hardware":
        hw = _validate(HardwareProfile, data, text, path)
        _check_sources(data, text, path)  # after the fields themselves: a missing field is named as such
        return hw
    if kind == "target":
        return _validate(Target, data, text, path)
    network_kind = data.get("kind")
    if network_kind not in NETWORK_KINDS:
        raise _problem(
            path, text, ("kind",), f"must be one of {', '.join(NETWORK_KINDS)} (got {network_kind!r})"
        )
    if network_kind == "lorawan":
        region = _validate(LoRaRegion, data, text, path)
        _check_sources(data, text, path)
        return tuple(region.profiles())
    ip = _validate(IpLinkProfile, data, text, path)
    _check_sources(data, text, path)
    return (ip,)


def _check_sources(data: dict[str, Any], text: str, path: Path) -> None:
    """A profile with a [sources] table gives every number one, and names no field it lacks."""
    sources = data.get("sources")
    if sources is None:
        return  # a profile of one's own may leave provenance out; the shipped ones may not (tests)
    if not isinstance(sources, dict):
        raise _problem(path, text, ("sources",), "must be a table of field -> {kind, source}")
    fields = numbers(data, every_value=True)
    for key in sources:
        if not any(p == key or p.startswith(key + ".") or p.startswith(key + "[") for p in fields):
            raise _problem(path, text, ("sources",), f"'{key}' names no field of this profile")
    parsed = {k: NumberSource.model_validate(v) for k, v in sources.items() if isinstance(v, dict)}
    for p in numbers(data):
        if source_of(parsed, p) is None:
            raise _problem(path, text, ("sources",), f"no source for {p} (say measured, published, estimated or derived)")


def _load(path: Path, kind: str) -> Any:
    return _load_cached(path, _stamp(path), kind)


def _unknown(what: str, name: str, known: list[str]) -> CatalogError:
    return CatalogError(f"unknown {what} '{name}'; known: {', '.join(known) or 'none'}")


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.toml"))


def _named_file(folder: Path, name: str) -> Path | None:
    path = folder / f"{name}.toml"
    return path if re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) and path.is_file() else None


def hardware_names(data_dir: Path | None = None) -> list[str]:
    """Names of the hardware profiles (the file names: nothing is parsed)."""
    return [path.stem for path in _files(_folder(data_dir, "profiles", "hardware"))]


def network_names(data_dir: Path | None = None) -> list[str]:
    """Names of the network profiles, each LoRaWAN data rate on its own."""
    return [profile.name for profile in list_network(data_dir)]


def target_names(data_dir: Path | None = None) -> list[str]:
    """Names of the build targets (the file names: nothing is parsed)."""
    return [path.stem for path in _files(_folder(data_dir, "targets"))]


def list_hardware(data_dir: Path | None = None) -> list[HardwareProfile]:
    """Every hardware profile, sorted by name."""
    return [_load(path, "hardware") for path in _files(_folder(data_dir, "profiles", "hardware"))]


def hardware(name: str, data_dir: Path | None = None) -> HardwareProfile:
    folder = _folder(data_dir, "profiles", "hardware")
    path = _named_file(folder, name)
    if path is None:
        raise _unknown("hardware profile", name, hardware_names(data_dir))
    profile: HardwareProfile = _load(path, "hardware")
    return profile


def list_network(data_dir: Path | None = None) -> list[NetworkProfile]:
    """Every network profile (each LoRaWAN data rate on its own), sorted by file then data rate."""
    folder = _folder(data_dir, "profiles", "network")
    return [profile for path in _files(folder) for profile in _load(path, "network")]


def network(name: str, data_dir: Path | None = None) -> NetworkProfile:
    folder = _folder(data_dir, "profiles", "network")
    match = re.fullmatch(r"(lorawan-[a-z0-9-]+?)-dr\d+", name)
    path = _named_file(folder, match.group(1) if match else name)
    if path is not None:
        for profile in _load(path, "network"):
            if profile.name == name:
                return profile  # type: ignore[no-any-return]
    raise _unknown("network profile", name, network_names(data_dir))


def list_targets(data_dir: Path | None = None) -> list[Target]:
    """Every build target, sorted by name."""
    return [_load(path, "target") for path in _files(_folder(data_dir, "targets"))]


def target(name: str, data_dir: Path | None = None) -> Target:
    folder = _folder(data_dir, "targets")
    path = _named_file(folder, name)
    if path is None:
        raise _unknown("target", name, target_names(data_dir))
    found: Target = _load(path, "target")
    return found


def check_catalog(data_dir: Path | None = None) -> None:
    """Cross-references between files: targets named by profiles, default profiles, host profiles."""
    hw_folder = _folder(data_dir, "profiles", "hardware")
    profiles = {p.name: p for p in list_hardware(data_dir)}
    targets = {t.name: t for t in list_targets(data_dir)}

    def at(path: Path, loc: Loc, message: str) -> CatalogError:
        return _problem(path, path.read_text(encoding="utf-8"), loc, message)

    for profile in profiles.values():
        path = hw_folder / f"{profile.name}.toml"
        for target_name in profile.targets:
            if target_name not in targets:
                raise at(path, ("targets",), f"unknown target '{target_name}'; known: {', '.join(targets)}")
        host = profile.host_link.host_profile if profile.host_link else None
        if host is not None and host not in profiles:
            raise at(path, ("host_link", "host_profile"), f"unknown hardware profile '{host}'")
    for tgt in targets.values():
        path = _folder(data_dir, "targets") / f"{tgt.name}.toml"
        default = profiles.get(tgt.default_profile)
        if default is None:
            raise at(path, ("default_profile",), f"unknown hardware profile '{tgt.default_profile}'")
        if tgt.name not in default.targets:
            raise at(path, ("default_profile",), f"'{default.name}' does not list target '{tgt.name}'")
        if default.runtime != tgt.runtime:
            raise at(
                path, ("runtime",), f"{tgt.runtime} differs from {default.name}'s runtime {default.runtime}"
            )
