"""Starting a real ``keelway serve`` process for tests, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from keelway.store.database import open_database
from keelway.store.keys import KeyStore


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class KeelwayServer:
    """A keelway server process with its own data folder, config and key."""

    def __init__(
        self,
        folder: Path,
        database_url: str,
        models: dict[str, Any],
        *,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.database_url = database_url
        self.port = free_port()
        self.home = folder / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path = folder / "keelway.yaml"
        self.log_path = folder / "server.log"
        config = {
            "server": {"host": "127.0.0.1", "port": self.port},
            "database": {"url": database_url},
            "auth": {"key_cache_seconds": 0},
            "models": models,
        }
        for section, values in (settings or {}).items():
            config.setdefault(section, {}).update(values)
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = {**os.environ, "KEELWAY_HOME": str(self.home), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.database = open_database(database_url)
        self.keys = KeyStore(self.database)
        _, self.key = self.keys.create(f"test-{uuid.uuid4().hex[:8]}", team="tests")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``keelway`` command against this server's config."""
        return subprocess.run(
            [sys.executable, "-m", "keelway", *args, "--config", str(self.config_path)],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def start(self, timeout: float = 60) -> KeelwayServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keelway",
                "serve",
                "--config",
                str(self.config_path),
            ],
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"keelway exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(
                    self.url + "/healthz", timeout=1
                ) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        # Stop the process here: the caller gets no server to close.
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"keelway did not become healthy:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )

    def close(self) -> None:
        self.stop()
        self.database.close()
