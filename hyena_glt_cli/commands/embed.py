"""`hyena-glt embed` (being built)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed() -> None:
        """(being built)"""
        raise typer.Exit(1)
