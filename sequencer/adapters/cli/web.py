"""`refseq web`: serve the rep's queue, sign-in and unsubscribe pages (FastAPI + uvicorn)."""

from __future__ import annotations

import typer

from sequencer.adapters.cli import output
from sequencer.adapters.cli.common import handle_errors, settings


@handle_errors
def web(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
) -> None:
    """Serve the web queue. Give reps access with `refseq rep add` / `refseq rep link`."""
    import uvicorn  # lazy: the web stack costs ~0.4 s to import

    from sequencer.adapters.web.app import create_app

    config = settings()
    if config.secret_key_file is not None:
        output.problem(
            f"sessions and unsubscribe links are signed with the key in {config.secret_key_file} "
            "(generated for this data directory; the workers must use the same one)"
        )
    output.problem(f"refseq web on http://{host}:{port} (public URL: {config.base_url})")
    # proxy_headers: behind a reverse proxy on this host, rate limits see the client's address.
    uvicorn.run(create_app(config), host=host, port=port, proxy_headers=True, log_level="info")
