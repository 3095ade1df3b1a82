"""`hyena-glt benchmark` (being built)."""

import typer


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    def benchmark() -> None:
        """(being built)"""
        raise typer.Exit(1)
