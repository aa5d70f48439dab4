"""The `kasmina-edge` command line (typer). Command modules import heavy parts lazily."""
