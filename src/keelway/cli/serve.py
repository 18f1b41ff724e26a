"""``keelway serve``: run the gateway."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from keelway.cli.options import config_option, open_store, resolve_config
from keelway.config import ConfigError

log = logging.getLogger("keelway.server")


@click.command()
@config_option
@click.option(
    "--host", default=None, help="Address to listen on [default: server.host]."
)
@click.option(
    "--port", type=int, default=None, help="Port to listen on [default: server.port]."
)
def serve(config_path: Path | None, host: str | None, port: int | None) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    import uvicorn

    from keelway.gateway import create_app
    from keelway.logs import configure_logging

    config = resolve_config(config_path)
    configure_logging(config.server.log_level)
    database = open_store(config)
    try:
        app = create_app(config, database)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    host = host or config.server.host
    port = config.server.port if port is None else port
    log.info("starting keelway on http://%s:%d", host, port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=30,
            server_header=False,
        )
    )
    try:
        server.run()
    finally:
        database.close()
    if not server.started:
        raise click.ClickException(f"could not start the server on {host}:{port}")
