"""Measure what keelway adds to a chat completion over calling the upstream directly.

The script starts the fake OpenAI upstream (``tests.fakes.openai_upstream``) and
one ``keelway serve`` process in front of it, each as its own process on a free
127.0.0.1 port. keelway gets a fresh SQLite store in a temporary KEELWAY_HOME,
a fresh virtual key and its default settings, with full payload tracing.

An aiohttp load generator in this process then sends the same chat completion
request (one short user message, ``max_tokens`` 16) straight to the fake and
through keelway, streamed and not streamed, at each concurrency. Each case runs
``--runs`` times, alternating which target goes first, and the report gives the
median over the runs of:

- requests per second and the p50 and p99 latency of whole responses (for a
  streamed request, until the last byte of the SSE body is read);
- the latency keelway adds: its p50 minus the direct p50, and the same for p99;
- CPU time per request of keelway, of the fake upstream and of this load
  generator, from ``/proc/<pid>/stat`` and ``time.process_time``.

Finally it checks that keelway stored exactly one trace per request sent
through it, and exits with status 1 when traces are missing or duplicated or
when any request failed.

With ``--peer litellm`` the same run also measures the LiteLLM proxy, started
from its own virtual environment (see ``peers.py``) in front of the same fake
with one worker process and no database. It gets the same cases, warm-up and
runs, and the report adds its numbers and the ratios keelway/LiteLLM of added
p50 latency, requests per second and CPU per request.

Run it from the repository root::

    python bench/gateway_overhead.py [--requests N] [--runs R]
        [--concurrency 1,16,64] [--json FILE] [--quick] [--peer litellm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis
import yaml
from peers import PeerLaunch, ensure_litellm_venv, prepare_litellm

from keelway.store.database import Database, open_database
from keelway.store.keys import KeyStore
from keelway.store.traces import TraceStore
from keelway.tracing.writer import RETRY_DELAYS

REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURES = ("routing", "limits", "limits-redis", "cache", "prompt", "guard")
REDIS_URL = os.environ.get("KEELWAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
HOST = "127.0.0.1"
MODEL = "gpt-4o-mini"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

DEFAULT_REQUESTS = 4000
DEFAULT_RUNS = 5
DEFAULT_WARMUP = 300
QUICK_REQUESTS = 300
QUICK_RUNS = 2
QUICK_WARMUP = 100
DEFAULT_TIMEOUT = 1200.0
# A peer's runs come on top of keelway's and take longer: LiteLLM served 30
# to 90 requests per second in a --quick run on 2 cores, which puts the full
# run at an estimated 45 minutes.
PEER_DEFAULT_TIMEOUT = 7200.0
REQUEST_TIMEOUT = 30.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
# A peer's CPU counter that has not moved for this long means it finished the
# work it does after sending the last response.
IDLE_SETTLE_SECONDS = 0.25
IDLE_TIMEOUT = 10.0
# The writer inserts a batch as soon as the previous one commits, or retries a
# failed batch after at most max(RETRY_DELAYS), so a trace count that has not
# moved for longer than that means the queue is empty.
TRACE_SETTLE_SECONDS = max(RETRY_DELAYS) + 1.0
TRACE_DRAIN_TIMEOUT = 120.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure keelway's added latency, throughput and CPU per "
        "request against a fake OpenAI upstream."
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help=f"measured requests per run and case [default: {DEFAULT_REQUESTS}, "
        f"--quick: {QUICK_REQUESTS}]",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help=f"runs per case and target; medians are reported "
        f"[default: {DEFAULT_RUNS}, --quick: {QUICK_RUNS}]",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"unmeasured requests per case and target before its runs "
        f"[default: {DEFAULT_WARMUP}, --quick: {QUICK_WARMUP}]",
    )
    parser.add_argument(
        "--concurrency",
        default="1,16,64",
        help="comma-separated numbers of requests in flight [default: 1,16,64]",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="write the raw numbers to this file"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run with fewer requests and runs",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds the whole load may take before the script gives up "
        f"[default: {DEFAULT_TIMEOUT:.0f}, with --peer: {PEER_DEFAULT_TIMEOUT:.0f}]",
    )
    parser.add_argument(
        "--features",
        default="",
        help="comma-separated keelway features to turn on: routing (two "
        "deployments and a fallback group), limits (a key with rate limits and "
        "a budget, in memory), limits-redis (the same in the Redis at "
        f"{REDIS_URL}), cache (exact cache on, every request a miss that is "
        "stored), prompt (requests name a registry prompt and its variables "
        "instead of sending messages), guard (the guardrails section of the "
        "default config, its default input and output policy on every request) "
        "[default: none]",
    )
    parser.add_argument(
        "--peer",
        choices=["litellm"],
        default=None,
        help="also measure this gateway in front of the same fake (litellm is "
        "installed into bench/.venv-litellm on first use)",
    )
    args = parser.parse_args(argv)
    if args.timeout is None:
        args.timeout = PEER_DEFAULT_TIMEOUT if args.peer else DEFAULT_TIMEOUT
    args.requests = args.requests or (
        QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS
    )
    args.runs = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    if args.warmup is None:
        args.warmup = QUICK_WARMUP if args.quick else DEFAULT_WARMUP
    try:
        args.concurrency = [int(part) for part in args.concurrency.split(",")]
    except ValueError:
        parser.error(f"--concurrency: expected integers, got {args.concurrency!r}")
    if args.requests < 1 or args.runs < 1 or args.warmup < 0:
        parser.error("--requests and --runs must be at least 1, --warmup at least 0")
    if any(c < 1 for c in args.concurrency):
        parser.error("--concurrency: every value must be at least 1")
    args.features = [part for part in args.features.split(",") if part]
    unknown = set(args.features) - set(FEATURES)
    if unknown:
        parser.error(f"--features: unknown {sorted(unknown)}; choose from {FEATURES}")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of ``pid`` and all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name in field 2 may contain spaces and brackets, so count the
    # fields from the last closing bracket: utime and stime are fields 14 and 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """Return ``pid`` and the pids of all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited while the loop ran
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, index = [pid], 0
    while index < len(tree):
        tree.extend(children.get(tree[index], []))
        index += 1
    return tree


def process_tree_cpu_seconds(pid: int) -> float:
    """Return the CPU time of ``pid`` and its descendants, live or reaped.

    Adds up utime and stime of every live process in the tree, and cutime and
    cstime (fields 16 and 17), which hold the CPU time of its children that
    exited and were waited for. A child that exited but was not yet waited
    for is counted while its zombie's entry lasts.
    """
    total = 0
    for member in process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


class ServerProcess:
    """A child process that serves HTTP on 127.0.0.1 and is stopped with SIGTERM.

    With ``process_group`` the server runs in a session and process group of
    its own, its CPU time includes its descendants', and stopping it signals
    the whole group, so that no process it started outlives the benchmark.
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        health_path: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        start_timeout: float = START_TIMEOUT,
        process_group: bool = False,
    ) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.health_path = health_path
        self.log_path = log_path
        self.env = env
        self.start_timeout = start_timeout
        self.process_group = process_group
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        if self.process_group:
            return process_tree_cpu_seconds(self.pid)
        return process_cpu_seconds(self.pid)

    def start(self) -> None:
        """Start the process and wait until its health path returns 200."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.process_group,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.returncode} "
                    f"during start:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(
                    self.url + self.health_path, timeout=1
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not answer {self.health_path} within "
            f"{self.start_timeout:.0f}s:\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        """Send SIGTERM and wait; SIGKILL only if it outlives STOP_TIMEOUT."""
        if self.process is None:
            return None
        if self.process_group:
            return self.stop_group()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(
                f"{self.name} ignored SIGTERM for {STOP_TIMEOUT:.0f}s; killing it",
                file=sys.stderr,
            )
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def stop_group(self) -> int | None:
        """Send SIGTERM to the server's process group, SIGKILL what outlives it."""
        assert self.process is not None
        group = self.process.pid
        signal_group(group, signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(
                f"{self.name} ignored SIGTERM for {STOP_TIMEOUT:.0f}s; killing it",
                file=sys.stderr,
            )
            signal_group(group, signal.SIGKILL)
            code = self.process.wait()
        # Children of the server that it did not stop are still in the group.
        deadline = time.monotonic() + STOP_TIMEOUT
        while signal_group(group, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        if signal_group(group, 0):
            print(
                f"processes started by {self.name} outlived it; killing them",
                file=sys.stderr,
            )
            signal_group(group, signal.SIGKILL)
        self.process = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def signal_group(group: int, signum: int) -> bool:
    """Send ``signum`` to a process group; return False when the group is gone."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Environment:
    """The servers, keelway's store and the keys the load presents."""

    folder: Path
    fake: ServerProcess
    keelway: ServerProcess
    database: Database
    key: str
    peer: ServerProcess | None = None
    peer_launch: PeerLaunch | None = None

    @property
    def traces(self) -> TraceStore:
        return TraceStore(self.database)


def keelway_config(
    keelway_port: int,
    fake_port: int,
    features: list[str] | None = None,
    redis_prefix: str = "",
) -> dict[str, Any]:
    features = features or []
    deployment = {
        "provider": "openai",
        "model": MODEL,
        "base_url": f"http://{HOST}:{fake_port}/v1",
        # The fake run as a process accepts any key.
        "api_key": "sk-bench-unused",
    }
    models: dict[str, Any] = {MODEL: {"deployments": [deployment]}}
    if "routing" in features:
        models[MODEL] = {
            "deployments": [
                {**deployment, "name": "first"},
                {**deployment, "name": "second"},
            ],
            "strategy": "least_busy",
            "fallbacks": ["backup"],
        }
        models["backup"] = {"deployments": [{**deployment, "name": "backup"}]}
    config: dict[str, Any] = {
        "server": {"host": HOST, "port": keelway_port},
        "tracing": {"payloads": "full"},
        "auth": {"key_cache_seconds": 1.0},
        "models": models,
    }
    if "limits-redis" in features:
        config["limits"] = {"redis_url": REDIS_URL, "key_prefix": redis_prefix}
    if "cache" in features:
        config["cache"] = {"exact": {"enabled": True}}
    if "guard" in features:
        from keelway.config import default_config_text

        config["guardrails"] = yaml.safe_load(default_config_text())["guardrails"]
    return config


@contextmanager
def environment(
    peer_venv: Path | None = None,
    features: list[str] | None = None,
    upstream_delay_ms: float = 0.0,
    upstream_jitter_ms: float = 0.0,
) -> Iterator[Environment]:
    """Start the fake, keelway and the peer if any; stop all on the way out.

    ``peer_venv`` is the virtual environment of the LiteLLM proxy, or None to
    run without a peer.
    """
    with tempfile.TemporaryDirectory(prefix="keelway-bench-") as name:
        folder = Path(name)
        home = folder / "home"
        home.mkdir()
        fake_port, keelway_port = free_port(), free_port()
        config_path = folder / "keelway.yaml"
        features = features or []
        redis_prefix = f"keelway-bench:{uuid.uuid4().hex[:8]}:"
        config = keelway_config(keelway_port, fake_port, features, redis_prefix)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        # The config leaves database.url empty, so keelway uses this file.
        database = open_database(f"sqlite:///{home / 'keelway.db'}")
        limits: dict[str, Any] = {}
        if {"limits", "limits-redis"} & set(features):
            # Limits far above the load, so every request is checked and passes.
            limits = {
                "rpm": 2**31 - 1,
                "tpm": 2**31 - 1,
                "budget_usd": Decimal(1_000_000),
                "budget_period": "month",
            }
        _, key = KeyStore(database).create("bench", team="bench", **limits)
        if "prompt" in features:
            publish_prompt(database)
        fake = ServerProcess(
            "fake upstream",
            [
                sys.executable,
                "-m",
                "tests.fakes.openai_upstream",
                "--port",
                str(fake_port),
                "--delay-ms",
                str(upstream_delay_ms),
                "--jitter-ms",
                str(upstream_jitter_ms),
            ],
            fake_port,
            "/v1/models",
            folder / "fake.log",
        )
        keelway = ServerProcess(
            "keelway",
            [sys.executable, "-m", "keelway", "serve", "--config", str(config_path)],
            keelway_port,
            "/healthz",
            folder / "keelway.log",
            env={**os.environ, "KEELWAY_HOME": str(home)},
        )
        launch: PeerLaunch | None = None
        peer: ServerProcess | None = None
        if peer_venv is not None:
            peer_port = free_port()
            launch = prepare_litellm(
                peer_venv, folder, HOST, peer_port, MODEL, f"{fake.url}/v1"
            )
            peer = ServerProcess(
                f"{launch.label} {launch.version}",
                launch.command,
                peer_port,
                launch.health_path,
                folder / f"{launch.name}.log",
                env=launch.env,
                start_timeout=launch.start_timeout,
                process_group=True,
            )
        servers = [server for server in (peer, keelway, fake) if server is not None]
        try:
            fake.start()
            keelway.start()
            print(
                f"fake upstream pid {fake.pid} at {fake.url}, "
                f"keelway pid {keelway.pid} at {keelway.url}",
                flush=True,
            )
            if peer is not None:
                peer.start()
                processes = len(process_tree(peer.pid))
                print(
                    f"{peer.name} pid {peer.pid} at {peer.url}, "
                    f"{processes} process{'es' if processes > 1 else ''} in its tree",
                    flush=True,
                )
            yield Environment(folder, fake, keelway, database, key, peer, launch)
        finally:
            for server in servers:
                try:
                    code = server.stop()
                except Exception as error:
                    print(f"stopping {server.name} failed: {error!r}", file=sys.stderr)
                    continue
                # uvicorn re-raises the SIGTERM it caught once its graceful
                # shutdown is done, so -SIGTERM is a clean exit too.
                if code not in (None, 0, -signal.SIGTERM):
                    print(
                        f"{server.name} exited with status {code}:\n"
                        f"{server.log_tail()}",
                        file=sys.stderr,
                    )
            database.close()
            if "limits-redis" in features:
                delete_redis_keys(redis_prefix)


PROMPT_QUESTION = "Say hello in five words."


def publish_prompt(database: Database) -> None:
    """Create prompt ``bench``, approved and labelled ``production``.

    It renders to the same upstream request as ``request_body``.
    """
    from keelway.governance import AuditLog, Principal
    from keelway.prompts.content import PromptContent
    from keelway.prompts.registry import PromptRegistry

    author = Principal.local()
    registry = PromptRegistry(database, AuditLog(database))
    content = PromptContent.from_dict(
        {
            "variables": {"question": "string"},
            "messages": [{"role": "user", "content": "{{ question }}"}],
            "model": {"group": MODEL, "max_tokens": 16},
        }
    )
    registry.create(author, "bench", content)
    reviewer = Principal("bench-reviewer", "user", author.grants)
    registry.review(reviewer, "bench", "1.0.0", approve=True)
    registry.set_label(author, "bench", "production", "1.0.0")


def prompt_body(stream: bool) -> bytes:
    body = {
        "prompt": "bench@production",
        "variables": {"question": PROMPT_QUESTION},
        "stream": stream,
    }
    return orjson.dumps(body)


def request_body(stream: bool, deterministic: bool = False) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT_QUESTION}],
        "max_tokens": 16,
        "stream": stream,
    }
    if deterministic:
        # Cacheable, so the cache hashes and stores every request.
        body["temperature"] = 0
    return orjson.dumps(body)


def delete_redis_keys(prefix: str) -> None:
    """Delete the keys a limits-redis run left in Redis."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class Load:
    """Where the load generator sends requests and what it checks in answers."""

    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool

    def complete(self, status: int, payload: bytes) -> bool:
        if status != 200:
            return False
        if self.stream:
            return payload.rstrip().endswith(b"data: [DONE]")
        return b'"choices"' in payload


@dataclass
class Burst:
    """Latencies and failures of one batch of requests."""

    latencies: list[float]
    failures: int
    seconds: float
    first_failure: str | None = None


async def send_requests(
    session: aiohttp.ClientSession, load: Load, count: int, concurrency: int
) -> Burst:
    """Send ``count`` requests with ``concurrency`` of them in flight at a time."""
    latencies: list[float] = []
    failures = 0
    first_failure: str | None = None
    remaining = count

    async def worker() -> None:
        nonlocal remaining, failures, first_failure
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                async with session.post(
                    load.url, data=load.body, headers=load.headers
                ) as response:
                    payload = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                failures += 1
                first_failure = first_failure or repr(error)
                continue
            elapsed = time.perf_counter() - started
            if load.complete(status, payload):
                latencies.append(elapsed)
            else:
                failures += 1
                first_failure = first_failure or f"HTTP {status}: {payload[:200]!r}"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return Burst(latencies, failures, time.perf_counter() - started, first_failure)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Run:
    """One measured run of one case against one target."""

    target: str
    requests: int
    failures: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    keelway_cpu_ms: float | None
    fake_cpu_ms: float
    client_cpu_ms: float
    peer_cpu_ms: float | None = None


def ratio(numerator: float, denominator: float) -> float:
    """Return numerator / denominator, or NaN unless the denominator is positive."""
    return numerator / denominator if denominator > 0 else math.nan


@dataclass
class Case:
    """One concurrency and streaming mode, with its runs against each target.

    ``targets`` is "direct", "keelway" and, with --peer, the peer's name.
    """

    concurrency: int
    stream: bool
    targets: tuple[str, ...] = ("direct", "keelway")
    runs: dict[str, list[Run]] = field(init=False)

    def __post_init__(self) -> None:
        self.runs = {target: [] for target in self.targets}

    @property
    def name(self) -> str:
        return f"c{self.concurrency}-{'stream' if self.stream else 'json'}"

    def median(self, target: str, metric: str) -> float:
        values = [getattr(run, metric) for run in self.runs[target]]
        present = [value for value in values if value is not None]
        return statistics.median(present) if present else math.nan

    def summary(self) -> dict[str, float]:
        direct_p50 = self.median("direct", "p50_ms")
        direct_p99 = self.median("direct", "p99_ms")
        keelway_p50 = self.median("keelway", "p50_ms")
        keelway_p99 = self.median("keelway", "p99_ms")
        return {
            "direct_rps": self.median("direct", "rps"),
            "keelway_rps": self.median("keelway", "rps"),
            "direct_p50_ms": direct_p50,
            "direct_p99_ms": direct_p99,
            "keelway_p50_ms": keelway_p50,
            "keelway_p99_ms": keelway_p99,
            # Medians of the per-run differences, so that a slow run of one
            # target is paired with the run of the other target next to it.
            "added_p50_ms": self.median_added("p50_ms"),
            "added_p99_ms": self.median_added("p99_ms"),
            "keelway_cpu_ms": self.median("keelway", "keelway_cpu_ms"),
            "fake_cpu_ms_direct": self.median("direct", "fake_cpu_ms"),
            "fake_cpu_ms_keelway": self.median("keelway", "fake_cpu_ms"),
            "client_cpu_ms_direct": self.median("direct", "client_cpu_ms"),
            "client_cpu_ms_keelway": self.median("keelway", "client_cpu_ms"),
            **self.peer_summary(),
        }

    def peer_summary(self) -> dict[str, float]:
        """Return the medians of the peer's runs and keelway's ratios to them."""
        summary: dict[str, float] = {}
        for peer in self.targets[2:]:
            added_p50 = self.median_added("p50_ms", peer)
            rps = self.median(peer, "rps")
            cpu_ms = self.median(peer, "peer_cpu_ms")
            summary |= {
                f"{peer}_rps": rps,
                f"{peer}_p50_ms": self.median(peer, "p50_ms"),
                f"{peer}_p99_ms": self.median(peer, "p99_ms"),
                f"{peer}_added_p50_ms": added_p50,
                f"{peer}_added_p99_ms": self.median_added("p99_ms", peer),
                f"{peer}_cpu_ms": cpu_ms,
                f"fake_cpu_ms_{peer}": self.median(peer, "fake_cpu_ms"),
                f"client_cpu_ms_{peer}": self.median(peer, "client_cpu_ms"),
                # keelway's figure divided by the peer's: below 1 means keelway
                # adds less latency or spends less CPU, above 1 that it serves
                # more requests per second.
                f"keelway_to_{peer}_added_p50": ratio(
                    self.median_added("p50_ms"), added_p50
                ),
                f"keelway_to_{peer}_rps": ratio(self.median("keelway", "rps"), rps),
                f"keelway_to_{peer}_cpu": ratio(
                    self.median("keelway", "keelway_cpu_ms"), cpu_ms
                ),
            }
        return summary

    def median_added(self, metric: str, target: str = "keelway") -> float:
        pairs = zip(self.runs[target], self.runs["direct"], strict=True)
        differences = [getattr(t, metric) - getattr(d, metric) for t, d in pairs]
        return statistics.median(differences) if differences else math.nan


class Bench:
    """Runs every case against every target and keeps the trace tally."""

    def __init__(self, env: Environment, args: argparse.Namespace) -> None:
        self.env = env
        self.args = args
        self.features: list[str] = args.features
        self.targets: tuple[str, ...] = ("direct", "keelway")
        if env.peer_launch is not None:
            self.targets += (env.peer_launch.name,)
        self.sent_through_keelway = 0
        self.failures = 0

    def gateway(self, target: str) -> ServerProcess | None:
        """Return the server that ``target`` sends through, None for direct."""
        if target == "keelway":
            return self.env.keelway
        if target == "direct":
            return None
        return self.env.peer

    def load(self, target: str, stream: bool) -> Load:
        gateway = self.gateway(target)
        base = self.env.fake.url if gateway is None else gateway.url
        headers = {"Content-Type": "application/json"}
        if target == "keelway":
            headers["Authorization"] = f"Bearer {self.env.key}"
            if "cache" in self.features:
                # Read nothing, store everything: the cost of a cache miss.
                headers["Cache-Control"] = "no-cache"
        elif self.env.peer_launch is not None and gateway is self.env.peer:
            headers["Authorization"] = f"Bearer {self.env.peer_launch.api_key}"
        body = request_body(stream, deterministic="cache" in self.features)
        if target == "keelway" and "prompt" in self.features:
            body = prompt_body(stream)
        return Load(f"{base}/v1/chat/completions", headers, body, stream)

    async def burst(
        self, session: aiohttp.ClientSession, load: Load, count: int, concurrency: int
    ) -> Burst:
        if load.url.startswith(self.env.keelway.url):
            self.sent_through_keelway += count
        burst = await send_requests(session, load, count, concurrency)
        if burst.failures:
            self.failures += burst.failures
            print(
                f"  {burst.failures} of {count} requests to {load.url} failed; "
                f"first: {burst.first_failure}",
                file=sys.stderr,
            )
        return burst

    async def wait_for_traces(self, expected: int) -> int:
        """Poll the trace count until it reaches ``expected`` or stops moving."""
        last, last_change = -1, time.monotonic()
        deadline = last_change + TRACE_DRAIN_TIMEOUT
        while time.monotonic() < deadline:
            count = int(await asyncio.to_thread(self.env.traces.count))
            if count >= expected:
                return count
            if count != last:
                last, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > TRACE_SETTLE_SECONDS:
                return count
            await asyncio.sleep(0.05)
        return last

    async def wait_for_peer(self) -> None:
        """Let the peer finish the work it does after its last response.

        For LiteLLM that is its logging callbacks, which run as tasks after
        the response is sent. The wait plays the part for the peer that
        wait_for_traces plays for keelway, so that this work counts towards
        the run that caused it.
        """
        if self.env.peer is None:
            return
        last = self.env.peer.cpu_seconds()
        deadline = time.monotonic() + IDLE_TIMEOUT
        while time.monotonic() < deadline:
            await asyncio.sleep(IDLE_SETTLE_SECONDS)
            now = self.env.peer.cpu_seconds()
            if now == last:
                return
            last = now

    async def check_peer(self) -> None:
        """Check that the peer returns the fake's completion before measuring it."""
        if self.env.peer_launch is None:
            return
        answers: dict[str, str] = {}
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for target in ("direct", self.env.peer_launch.name):
                load = self.load(target, stream=False)
                async with session.post(
                    load.url, data=load.body, headers=load.headers
                ) as response:
                    payload = await response.read()
                    if response.status != 200:
                        raise RuntimeError(
                            f"{target} returned HTTP {response.status}: "
                            f"{payload[:300]!r}"
                        )
                answers[target] = orjson.loads(payload)["choices"][0]["message"][
                    "content"
                ]
        if answers[self.env.peer_launch.name] != answers["direct"]:
            raise RuntimeError(
                f"{self.env.peer_launch.label} did not return the fake's completion: "
                f"{answers!r}"
            )

    async def measure(
        self, session: aiohttp.ClientSession, target: str, case: Case
    ) -> Run:
        load = self.load(target, case.stream)
        requests = self.args.requests
        gateway = self.gateway(target)
        gateway_before = gateway.cpu_seconds() if gateway is not None else 0.0
        fake_before = self.env.fake.cpu_seconds()
        client_before = time.process_time()
        burst = await self.burst(session, load, requests, case.concurrency)
        client_after = time.process_time()
        gateway_cpu_ms: float | None = None
        if gateway is not None:
            if target == "keelway":
                # Let the trace writer finish this run's batches, so their
                # inserts count towards this run's CPU and not the next run's.
                await self.wait_for_traces(self.sent_through_keelway)
            else:
                await self.wait_for_peer()
            gateway_cpu_ms = (gateway.cpu_seconds() - gateway_before) * 1000 / requests
        fake_cpu_ms = (self.env.fake.cpu_seconds() - fake_before) * 1000 / requests
        latencies = sorted(burst.latencies)
        return Run(
            target=target,
            requests=requests,
            failures=burst.failures,
            seconds=burst.seconds,
            rps=requests / burst.seconds,
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            keelway_cpu_ms=gateway_cpu_ms if target == "keelway" else None,
            fake_cpu_ms=fake_cpu_ms,
            client_cpu_ms=(client_after - client_before) * 1000 / requests,
            peer_cpu_ms=None if target == "keelway" else gateway_cpu_ms,
        )

    async def run_case(self, case: Case) -> None:
        sessions: dict[str, aiohttp.ClientSession] = {}
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        try:
            for target in self.targets:
                connector = aiohttp.TCPConnector(limit=case.concurrency)
                sessions[target] = aiohttp.ClientSession(
                    connector=connector, timeout=timeout
                )
                if self.args.warmup:
                    await self.burst(
                        sessions[target],
                        self.load(target, case.stream),
                        self.args.warmup,
                        case.concurrency,
                    )
            # Keep the warm-up's trace inserts out of the first measured run.
            await self.wait_for_traces(self.sent_through_keelway)
            await self.wait_for_peer()
            for index in range(self.args.runs):
                # Alternate between the order of self.targets and its reverse.
                # With a peer, keelway always runs between the other two.
                order = self.targets if index % 2 == 0 else self.targets[::-1]
                for target in order:
                    run = await self.measure(sessions[target], target, case)
                    case.runs[target].append(run)
                    print(
                        f"  {case.name} run {index + 1}/{self.args.runs} {target:7}: "
                        f"{run.rps:7.0f} rps  p50 {run.p50_ms:6.2f} ms  "
                        f"p99 {run.p99_ms:6.2f} ms",
                        flush=True,
                    )
        finally:
            for session in sessions.values():
                await session.close()

    async def run(self) -> list[Case]:
        await self.check_peer()
        cases = [
            Case(concurrency, stream, self.targets)
            for concurrency in self.args.concurrency
            for stream in (False, True)
        ]
        for case in cases:
            print(f"case {case.name}", flush=True)
            await self.run_case(case)
        return cases


def results_table(cases: list[Case]) -> str:
    header = (
        "| case | concurrency | stream | direct rps | keelway rps "
        "| direct p50 / p99 ms | keelway p50 / p99 ms | added p50 / p99 ms "
        "| keelway CPU ms/req |"
    )
    lines = [header, "|" + " --- |" * 9]
    for case in cases:
        s = case.summary()
        cells = [
            case.name,
            str(case.concurrency),
            "yes" if case.stream else "no",
            f"{s['direct_rps']:.0f}",
            f"{s['keelway_rps']:.0f}",
            f"{s['direct_p50_ms']:.2f} / {s['direct_p99_ms']:.2f}",
            f"{s['keelway_p50_ms']:.2f} / {s['keelway_p99_ms']:.2f}",
            f"{s['added_p50_ms']:+.2f} / {s['added_p99_ms']:+.2f}",
            f"{s['keelway_cpu_ms']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(cases: list[Case]) -> str:
    header = (
        "| case | keelway | fake, direct runs | fake, keelway runs "
        "| load generator, direct runs | load generator, keelway runs |"
    )
    lines = [header, "|" + " --- |" * 6]
    for case in cases:
        s = case.summary()
        lines.append(
            f"| {case.name} | {s['keelway_cpu_ms']:.2f} "
            f"| {s['fake_cpu_ms_direct']:.2f} | {s['fake_cpu_ms_keelway']:.2f} "
            f"| {s['client_cpu_ms_direct']:.2f} | {s['client_cpu_ms_keelway']:.2f} |"
        )
    return "\n".join(lines)


def peer_table(cases: list[Case], peer: str, label: str) -> str:
    header = (
        f"| case | concurrency | stream | {label} rps | {label} p50 / p99 ms "
        f"| added p50 / p99 ms | {label} CPU ms/req | fake CPU ms/req "
        f"| load generator CPU ms/req |"
    )
    lines = [header, "|" + " --- |" * 9]
    for case in cases:
        s = case.summary()
        cells = [
            case.name,
            str(case.concurrency),
            "yes" if case.stream else "no",
            f"{s[f'{peer}_rps']:.0f}",
            f"{s[f'{peer}_p50_ms']:.2f} / {s[f'{peer}_p99_ms']:.2f}",
            f"{s[f'{peer}_added_p50_ms']:+.2f} / {s[f'{peer}_added_p99_ms']:+.2f}",
            f"{s[f'{peer}_cpu_ms']:.2f}",
            f"{s[f'fake_cpu_ms_{peer}']:.2f}",
            f"{s[f'client_cpu_ms_{peer}']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def ratio_table(cases: list[Case], peer: str, label: str) -> str:
    header = (
        f"| case | added p50 ms, keelway / {label} | ratio "
        f"| rps, keelway / {label} | ratio "
        f"| CPU ms/req, keelway / {label} | ratio |"
    )
    lines = [header, "|" + " --- |" * 7]
    for case in cases:
        s = case.summary()
        cells = [
            case.name,
            f"{s['added_p50_ms']:+.2f} / {s[f'{peer}_added_p50_ms']:+.2f}",
            format_ratio(s[f"keelway_to_{peer}_added_p50"]),
            f"{s['keelway_rps']:.0f} / {s[f'{peer}_rps']:.0f}",
            format_ratio(s[f"keelway_to_{peer}_rps"]),
            f"{s['keelway_cpu_ms']:.2f} / {s[f'{peer}_cpu_ms']:.2f}",
            format_ratio(s[f"keelway_to_{peer}_cpu"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


async def run_bench(
    env: Environment, args: argparse.Namespace
) -> tuple[Bench, list[Case]]:
    bench = Bench(env, args)
    cases = await asyncio.wait_for(bench.run(), args.timeout)
    return bench, cases


def raise_system_exit(signum: int, _frame: object) -> None:
    # Turn SIGTERM into an exception so that the servers are stopped on the
    # way out, as they are for Ctrl-C.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_system_exit)
    peer_venv = ensure_litellm_venv() if args.peer == "litellm" else None
    info = machine()
    print(
        f"{args.requests} requests x {args.runs} runs per case and target, "
        f"{args.warmup} warm-up requests, concurrency {args.concurrency}; "
        f"{info['cpus']} CPUs, load average {info['load_average_at_start'][0]:.2f}",
        flush=True,
    )
    started = time.monotonic()
    with environment(peer_venv, args.features) as env:
        try:
            bench, cases = asyncio.run(run_bench(env, args))
        except TimeoutError:
            print(
                f"the load did not finish within {args.timeout:.0f}s", file=sys.stderr
            )
            return 1
        stored = asyncio.run(bench.wait_for_traces(bench.sent_through_keelway))
        # A count that settled at the expected number could still grow if
        # requests were traced twice, so look once more after a pause.
        time.sleep(TRACE_SETTLE_SECONDS)
        stored = env.traces.count()
        keelway_pid = env.keelway.pid
        launch = env.peer_launch
        peer_pid = env.peer.pid if env.peer is not None else None
    elapsed = time.monotonic() - started
    # Other work on the machine skews every number, and the load average at
    # both ends is the cheapest sign of it.
    info["load_average_at_end"] = os.getloadavg()

    print()
    print(results_table(cases))
    print()
    print("CPU ms per request, by process:")
    print()
    print(cpu_table(cases))
    print()
    if launch is not None:
        print(
            f"{launch.label} {launch.version} ({launch.requirement}), one worker "
            f"process, no database; CPU counts the proxy and any processes it "
            f"started:"
        )
        print()
        print(peer_table(cases, launch.name, launch.label))
        print()
        print(
            f"keelway's figures divided by {launch.label}'s (a ratio below 1 "
            f"means less added latency or CPU, above 1 more requests per second):"
        )
        print()
        print(ratio_table(cases, launch.name, launch.label))
        print()
    traces_ok = stored == bench.sent_through_keelway
    print(
        f"traces: {stored} stored for {bench.sent_through_keelway} requests sent "
        f"through keelway (warm-up included) - {'ok' if traces_ok else 'MISMATCH'}"
    )
    print(
        f"failed requests: {bench.failures}; total time {elapsed:.0f}s; "
        f"load average {info['load_average_at_end'][0]:.2f} at the end"
    )

    if args.json is not None:
        report = {
            "settings": {
                "requests": args.requests,
                "runs": args.runs,
                "warmup": args.warmup,
                "concurrency": args.concurrency,
                "peer": args.peer,
                "features": args.features,
            },
            "machine": info,
            "keelway_pid": keelway_pid,
            "peer": None
            if launch is None
            else {
                "name": launch.name,
                "version": launch.version,
                "requirement": launch.requirement,
                "command": launch.command,
                "environment": launch.env,
                "pid": peer_pid,
            },
            "cases": [
                {
                    "name": case.name,
                    "concurrency": case.concurrency,
                    "stream": case.stream,
                    "median": case.summary(),
                    "runs": {
                        target: [asdict(run) for run in runs]
                        for target, runs in case.runs.items()
                    },
                }
                for case in cases
            ],
            "traces": {"stored": stored, "expected": bench.sent_through_keelway},
            "failed_requests": bench.failures,
            "seconds": elapsed,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if traces_ok and bench.failures == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; the servers were stopped", file=sys.stderr)
        sys.exit(130)
