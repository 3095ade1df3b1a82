"""`hyena-glt tokenize` (being built)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("tokenize")
    def tokenize() -> None:
        """(being built)"""
        raise typer.Exit(1)
