"""``keelway serve``: run the gateway."""

from __future__ import annotations

import errno
import logging
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from keelway.cli.options import (
    config_error,
    config_option,
    config_source,
    open_store,
    resolve_config,
)
from keelway.config import Config, ConfigError
from keelway.store.database import Database

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

log = logging.getLogger("keelway.server")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@click.command()
@config_option
@click.option(
    "--host", default=None, help="Address to listen on [default: server.host]."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="TCP port to listen on, 0 for any free port [default: server.port].",
)
def serve(config_path: Path | None, host: str | None, port: int | None) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    from keelway.logs import configure_logging

    config = resolve_config(config_path)
    configure_logging(config.server.log_level)
    check_redis(config)
    host = host or config.server.host
    port = config.server.port if port is None else port
    listener = listen_socket(host, port)
    try:
        server = _serve_on(listener, config, config_source(config_path))
    finally:
        listener.close()
    if not server.started:
        raise click.ClickException(f"could not start the server on {host}:{port}")
    if server.force_exit:
        raise click.ClickException(
            "a second SIGINT forced the exit: requests in flight may have been "
            "cut off and queued traces lost"
        )


def check_redis(config: Config) -> None:
    """Fail at start when a configured Redis cannot be reached."""
    import redis

    from keelway.config import hide_userinfo

    urls = {"limits.redis_url": config.limits.redis_url}
    if config.cache.backend == "redis":
        urls["cache.redis_url"] = config.cache.redis_url
    for field, url in urls.items():
        if not url:
            continue
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        except redis.RedisError as error:
            raise click.ClickException(
                f"{field}: cannot reach Redis at {hide_userinfo(url)}:"
                f" {error.__class__.__name__}; start Redis or fix the URL"
            ) from None
        finally:
            client.close()


def _serve_on(listener: socket.socket, config: Config, source: str) -> uvicorn.Server:
    import uvicorn

    host, port = listener.getsockname()[:2]
    database = open_store(config)
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                _build_app(config, database, source),
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
        log.info("starting keelway on http://%s", _address(host, port))
        run_until_stopped(server, listener)
    finally:
        database.close()
    return server


def _build_app(config: Config, database: Database, source: str) -> FastAPI:
    from keelway.gateway import create_app

    try:
        app = create_app(config, database)
    except ConfigError as error:
        raise config_error(error, source) from None
    if not config.models:
        log.warning(
            "%s defines no models, so every model request gets 404; "
            "add a models section (keelway init writes an example)",
            source,
        )
    return app


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind a TCP socket for uvicorn, as a one-line CLI error when that fails.

    Binding before the store opens and the app starts reports a busy port at
    once, and handing the bound socket to uvicorn leaves no window in which
    another process can take the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # asyncio and uvicorn set this too. A restart may rebind a port still in
    # TIME_WAIT, but binding a port that another socket listens on still fails.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise click.ClickException(_bind_failure(host, port, error)) from None
    return sock


def _bind_failure(host: str, port: int, error: OSError) -> str:
    address = _address(host, port)
    if error.errno == errno.EADDRINUSE:
        return (
            f"could not listen on {address}: address already in use; stop the "
            "process that uses it or choose another port with --port"
        )
    return f"could not listen on {address}: {error.strerror or error}"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_until_stopped(server: uvicorn.Server, listener: socket.socket) -> None:
    """Serve on ``listener`` until SIGINT or SIGTERM, then return normally.

    After its graceful shutdown, uvicorn.Server.capture_signals restores the
    previous handlers and raises the caught signal again. The handlers set
    here take that signal, so a drained shutdown exits 0 instead of ending in
    KeyboardInterrupt or death by SIGTERM. They also stop the server when a
    signal arrives before uvicorn has set its own handlers.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        server.run(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
