"""`hyena-glt classify` (being built)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("classify")
    def classify() -> None:
        """(being built)"""
        raise typer.Exit(1)
