"""The `refseq` command line (typer + rich)."""
