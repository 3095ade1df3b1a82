"""`hyena-glt interpret` (being built)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("interpret")
    def interpret() -> None:
        """(being built)"""
        raise typer.Exit(1)
