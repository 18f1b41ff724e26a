"""Install and configure the gateways that gateway_overhead.py compares keelway with.

A peer is never a keelway dependency. Each one lives in its own virtual
environment under ``bench/``, created on first use and reused afterwards, and
runs as its own process on a free 127.0.0.1 port in front of the same fake
upstream as keelway. The only peer so far is the LiteLLM proxy.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent

LITELLM_VERSION = "1.106.12"
LITELLM_REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
# Returns 200 without a key once uvicorn has run the proxy's startup hooks.
LITELLM_HEALTH_PATH = "/health/liveliness"
# Starting the proxy took about 11 s on a 2-core machine.
LITELLM_START_TIMEOUT = 180.0
INSTALL_TIMEOUT = 1800.0
# The proxy needs none of these, and PyTorch alone is gigabytes.
FORBIDDEN_PACKAGES = frozenset({"torch", "tensorflow", "jax", "jaxlib"})

# Environment variables that keep the proxy from reaching any host but the
# fake upstream. In 1.106.12 the `litellm` command fetches the model cost map
# from raw.githubusercontent.com at start unless LITELLM_LOCAL_MODEL_COST_MAP
# is true. The other LITELLM_LOCAL_* catalogs are fetched only for Anthropic
# requests or admin endpoints, which the benchmark never sends. 1.106.12 has
# no telemetry and reads neither LITELLM_TELEMETRY nor LITELLM_OFFLINE_MODE
# (the one switch for all of these in later releases). Both are set for other
# releases.
LITELLM_OFFLINE_ENVIRONMENT = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_OFFLINE_MODE": "true",
}


@dataclass(frozen=True)
class PeerLaunch:
    """Command, environment and API key for starting and calling a peer gateway."""

    name: str
    label: str
    version: str
    requirement: str
    command: list[str]
    env: dict[str, str]
    health_path: str
    start_timeout: float
    api_key: str


def installed_version(python: Path, package: str) -> str | None:
    """Return the version of ``package`` installed for ``python``, or None."""
    result = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata, sys\n"
            "try:\n"
            "    print(importlib.metadata.version(sys.argv[1]))\n"
            "except importlib.metadata.PackageNotFoundError:\n"
            "    pass\n",
            package,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() or None


def ensure_litellm_venv() -> Path:
    """Create bench/.venv-litellm with the pinned LiteLLM proxy unless it is there.

    Returns the path of the virtual environment. Only wheels are installed, so
    no package's build script runs. pip resolves the requirement first, and
    the install stops before downloading anything when the resolution contains
    one of FORBIDDEN_PACKAGES.
    """
    python = LITELLM_VENV / "bin" / "python"
    if python.exists() and installed_version(python, "litellm") == LITELLM_VERSION:
        return LITELLM_VENV
    if not python.exists():
        print(f"creating {LITELLM_VENV} (once; later runs reuse it)", flush=True)
        subprocess.run(
            [sys.executable, "-m", "venv", str(LITELLM_VENV)],
            check=True,
            timeout=300,
        )
    pip = [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--only-binary",
        ":all:",
    ]
    with tempfile.TemporaryDirectory(prefix="keelway-bench-pip-") as folder:
        report_path = Path(folder) / "report.json"
        subprocess.run(
            [*pip, "--dry-run", "--quiet", "--report", str(report_path)]
            + [LITELLM_REQUIREMENT],
            check=True,
            timeout=INSTALL_TIMEOUT,
        )
        report = json.loads(report_path.read_text())
    names = {
        item["metadata"]["name"].lower().replace("_", "-") for item in report["install"]
    }
    forbidden = sorted(names & FORBIDDEN_PACKAGES)
    if forbidden:
        raise RuntimeError(
            f"installing {LITELLM_REQUIREMENT} would pull {', '.join(forbidden)}, "
            f"so nothing was installed. Pin a release that does not need it in "
            f"bench/peers.py"
        )
    print(
        f"installing {LITELLM_REQUIREMENT} ({len(names)} packages) into {LITELLM_VENV}",
        flush=True,
    )
    subprocess.run([*pip, LITELLM_REQUIREMENT], check=True, timeout=INSTALL_TIMEOUT)
    version = installed_version(python, "litellm")
    if version != LITELLM_VERSION:
        raise RuntimeError(
            f"{LITELLM_VENV} has litellm {version} after installing "
            f"{LITELLM_REQUIREMENT}"
        )
    return LITELLM_VENV


def litellm_config(
    model: str, upstream_base_url: str, master_key: str
) -> dict[str, Any]:
    """Return a proxy config that serves ``model`` from an OpenAI-style upstream."""
    return {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": upstream_base_url,
                    # The fake run as a process accepts any key.
                    "api_key": "sk-bench-unused",
                },
            }
        ],
        "general_settings": {
            "master_key": master_key,
            # Otherwise the proxy requests model info from the upstream at start
            # and every 300 s, which would land in some run's CPU figures.
            "disable_model_info_refresh": True,
        },
        "litellm_settings": {"set_verbose": False},
    }


def prepare_litellm(
    venv: Path,
    folder: Path,
    host: str,
    port: int,
    model: str,
    upstream_base_url: str,
) -> PeerLaunch:
    """Write the proxy's config and home under ``folder`` and return how to start it.

    The proxy gets no database (no DATABASE_URL, no database_url in the
    config) and a minimal environment, so that no variable of the calling
    shell (a database URL, provider keys, an HTTP proxy) changes what it does.
    """
    home = folder / "litellm-home"
    home.mkdir()
    master_key = f"sk-bench-{secrets.token_hex(16)}"
    config_path = folder / "litellm.yaml"
    config_path.write_text(
        yaml.safe_dump(
            litellm_config(model, upstream_base_url, master_key), sort_keys=False
        )
    )
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        # Errors only, which also turns off uvicorn's access log.
        "LITELLM_LOG": "ERROR",
        **LITELLM_OFFLINE_ENVIRONMENT,
    }
    version = installed_version(venv / "bin" / "python", "litellm") or "unknown"
    return PeerLaunch(
        name="litellm",
        label="LiteLLM",
        version=version,
        requirement=LITELLM_REQUIREMENT,
        command=[
            str(venv / "bin" / "litellm"),
            "--config",
            str(config_path),
            "--host",
            host,
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env=env,
        health_path=LITELLM_HEALTH_PATH,
        start_timeout=LITELLM_START_TIMEOUT,
        api_key=master_key,
    )
