"""`kasmina-edge keys`: the Ed25519 key pair that signs bundles (devices verify with the public half)."""

from __future__ import annotations

from pathlib import Path

import typer

from kasmina_edge.cli import checks
from kasmina_edge.cli.common import console, fail
from kasmina_edge.contracts.errors import KasminaError

app = typer.Typer(help="Ed25519 signing keys for bundles.", no_args_is_help=True)

_DIR_HELP = "Keys folder (default: $KASMINA_KEYS_DIR or ~/.config/kasmina-edge/keys)."


@app.command("init")
def init(
    directory: Path = typer.Option(None, "--dir", help=_DIR_HELP, callback=checks.output_dir),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing key pair (bundles it signed stop verifying)."
    ),
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
    console.print(f"private key: {priv} (keep it here; it never goes into a bundle)")
    console.print(f"public key:  {pub} (give this to devices)")
    console.print(f"key id:      {key_id(load_public_key(pub))}")


@app.command("show")
def show(directory: Path = typer.Option(None, "--dir", help=_DIR_HELP)) -> None:
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
    console.print(f"folder:      {folder}")
    if priv.exists():
        mode = priv.stat().st_mode & 0o777
        warn = "" if mode & 0o077 == 0 else "  [bold red]readable by others: chmod 600[/]"
        console.print(f"private key: {priv} (mode {mode:o}){warn}")
    else:
        console.print("private key: [yellow]absent (this machine can verify, not sign)[/]")
    console.print(f"key id:      {key_id(key)}")
    console.print(pub.read_text().rstrip(), highlight=False)
