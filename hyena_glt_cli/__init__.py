"""The `hyena-glt` command line: thin Typer commands over the `hyena_glt` library."""
