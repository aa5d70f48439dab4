"""`kasmina-edge keys`: the Ed25519 key pair that signs bundles (devices verify with the public half)."""

from __future__ import annotations

from pathlib import Path

import typer

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import emit, fail, human, json_option
from kasmina_edge.contracts.errors import KasminaError

app = typer.Typer(help="Ed25519 signing keys for bundles.", no_args_is_help=True)

_DIR_HELP = "Keys folder (default: $KASMINA_KEYS_DIR or ~/.config/kasmina-edge/keys)."


@app.command("init")
def init(
    directory: Path = typer.Option(None, "--dir", help=_DIR_HELP, callback=checks.output_dir),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing key pair (bundles it signed stop verifying)."
    ),
    as_json: bool = json_option(),
) -> None:
    """Create the signing key pair: private key PEM (mode 0600) and public key PEM."""
    from kasmina_edge.contracts.bundle import (
        PRIVATE_KEY_NAME,
        default_keys_dir,
        init_keys,
        key_id,
        load_public_key,
    )

    folder = directory or default_keys_dir()
    if (folder / PRIVATE_KEY_NAME).exists() and not force:
        fail(f"keys already exist in {folder} ({PRIVATE_KEY_NAME}); pass --force to replace them")
    try:
        priv, pub = init_keys(folder, force=force)
    except (KasminaError, OSError) as exc:
        fail(str(exc))
    kid = key_id(load_public_key(pub))
    if as_json:
        emit({"private_key": str(priv), "public_key": str(pub), "key_id": kid})
        return
    console = human(False)
    console.print(f"private key: {priv} (keep it here; it never goes into a bundle)")
    console.print(f"public key:  {pub} (give this to devices)")
    console.print(f"key id:      {kid}")


@app.command("show")
def show(directory: Path = typer.Option(None, "--dir", help=_DIR_HELP), as_json: bool = json_option()) -> None:
    """Show where the keys are, the key id, and the public key PEM."""
    from kasmina_edge.contracts.bundle import (
        PRIVATE_KEY_NAME,
        PUBLIC_KEY_NAME,
        default_keys_dir,
        key_id,
        load_public_key,
    )

    folder = directory or default_keys_dir()
    pub = folder / PUBLIC_KEY_NAME
    if not pub.exists():
        fail(f"no keys in {folder}: run `kasmina-edge keys init`")
    try:
        key = load_public_key(pub)
    except (KasminaError, ValueError) as exc:
        fail(f"{pub}: {exc}")
    priv = folder / PRIVATE_KEY_NAME
    if as_json:
        mode = priv.stat().st_mode & 0o777 if priv.exists() else None
        emit({"folder": str(folder), "private_key": str(priv) if priv.exists() else None,
              "private_key_mode": None if mode is None else f"{mode:o}", "key_id": key_id(key),
              "public_key_pem": pub.read_text()})
        return
    console = human(False)
    console.print(f"folder:      {folder}")
    if priv.exists():
        mode = priv.stat().st_mode & 0o777
        warn = "" if mode & 0o077 == 0 else "  [bold red]readable by others: chmod 600[/]"
        console.print(f"private key: {priv} (mode {mode:o}){warn}")
    else:
        console.print("private key: [yellow]absent (this machine can verify, not sign)[/]")
    console.print(f"key id:      {key_id(key)}")
    console.print(pub.read_text().rstrip(), highlight=False)


@app.command("rotate")
def rotate(
    to: Path = typer.Option(..., "--to", help="The new keys folder (`kasmina-edge keys init --dir NEW` first)."),
    directory: Path = typer.Option(None, "--dir", help=_DIR_HELP + " The key devices trust now."),
    out: Path = typer.Option(None, "--out", help="Where the statement goes (default: NEW/rotation-FROM-TO.json)."),
    as_json: bool = json_option(),
) -> None:
    """Sign, with the current key, a statement that the new key replaces it; devices take it with `flash --rotate`.
    The new folder also takes over the record of signed versions (devices refuse versions they already ran)."""
    import json

    from kasmina_edge.contracts.bundle import (
        SIGNED_VERSIONS_NAME,
        default_keys_dir,
        key_id,
        load_private_key,
        load_public_key,
        record_signed_version,
        sign_rotation,
        signed_versions,
    )

    old_dir = directory or default_keys_dir()
    try:
        old, new = load_private_key(old_dir), load_public_key(to)
        statement = sign_rotation(old, new)
        for target, entry in signed_versions(old_dir).items():  # versions go on counting up under the new key
            record_signed_version(target, int(entry.get("newest") or 0), None, to, kind="rotation")
    except (KasminaError, OSError) as exc:
        fail(str(exc))
    path = out or to / f"rotation-{key_id(old.public_key())}-{key_id(new)}.json"
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(statement, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    if as_json:
        emit({"from_key_id": key_id(old.public_key()), "to_key_id": key_id(new), "statement": str(path),
              "signed_versions": str(to / SIGNED_VERSIONS_NAME)})
        return
    console = human(False)
    console.print(f"rotation {key_id(old.public_key())} -> {key_id(new)}: {path}")
    console.print(f"devices: kasmina-edge flash BUNDLE --device emu://NAME --rotate {path} --keys {to}")
    console.print(f"signed versions carried over to {to / SIGNED_VERSIONS_NAME}")
