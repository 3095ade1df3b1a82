"""`hyena-glt train` (being built)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train() -> None:
        """(being built)"""
        raise typer.Exit(1)
