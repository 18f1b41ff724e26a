"""``keelway guard``: run guardrail scanners on a text or a labelled file.

``scan`` shows what each scanner of a policy finds in one text and what the
policy would do about it. ``eval`` measures scanners on a labelled JSONL
file. Both only detect, so nothing is blocked or rewritten here.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from keelway.cli.identity import echo_table
from keelway.cli.options import config_option, resolve_config
from keelway.guardrails.base import Detection, ScanContext, Scanner, ScannerConfigError
from keelway.guardrails.config import (
    SPAN_ACTIONS,
    GuardrailsConfig,
    PolicyConfig,
    ScannerSpec,
)
from keelway.guardrails.registry import SCANNERS, build_scanner, stages

# The scanners run when the config names no default policy.
BUILT_IN_POLICY = PolicyConfig(
    input=[
        ScannerSpec(type="pii", action="redact"),
        ScannerSpec(type="secrets", action="redact"),
        ScannerSpec(type="injection", action="block"),
    ],
    output=[
        ScannerSpec(type="pii", action="redact"),
        ScannerSpec(type="secrets", action="redact"),
    ],
)
BUILT_IN_NAME = "built-in (pii, secrets, injection)"


@click.group()
def guard() -> None:
    """Run guardrail scanners on a text or measure them on a labelled file."""


def _policy(guardrails: GuardrailsConfig, name: str | None) -> tuple[str, PolicyConfig]:
    """Return the named policy, else the config's default, else the built-in one."""
    if name is not None:
        policy = guardrails.policies.get(name)
        if policy is None:
            known = ", ".join(sorted(guardrails.policies)) or "none"
            raise click.ClickException(
                f"unknown policy {name!r}; policies in the config: {known}"
            )
        return name, policy
    if guardrails.default:
        return guardrails.default, guardrails.policies[guardrails.default]
    return BUILT_IN_NAME, BUILT_IN_POLICY


def _check_type(kind: str) -> None:
    if kind not in SCANNERS:
        known = ", ".join(sorted(SCANNERS))
        raise click.ClickException(f"unknown scanner {kind!r}; known types: {known}")


def _spec_for(policy: PolicyConfig, stage: str, kind: str) -> list[ScannerSpec]:
    """Return the policy's specs of a type in a stage, or one with defaults."""
    specs = [spec for spec in getattr(policy, stage) if spec.type == kind]
    return specs or [ScannerSpec(type=kind)]


def _build(spec: ScannerSpec) -> Scanner:
    """Build a scanner, turning a settings or import failure into one CLI line."""
    try:
        scanner = build_scanner(spec.type, spec.settings())
    except ScannerConfigError as error:
        message = str(error)
        # The registry's messages already name the scanner type.
        prefix = f"scanner {spec.type!r}: "
        message = message.removeprefix(prefix)
        raise click.ClickException(f"scanner {spec.label!r}: {message}") from None
    except ImportError as error:
        raise click.ClickException(
            f"scanner {spec.label!r} is not available: {error}"
        ) from None
    # The gateway refuses such a policy at start, so the CLI does too.
    if spec.action in SPAN_ACTIONS and not getattr(scanner, "spans", False):
        raise click.ClickException(
            f"scanner {spec.label!r}: action {spec.action!r} needs a scanner that"
            f" finds spans, and {spec.type!r} judges the whole text"
        )
    return scanner


def _read_text(text: str | None, file: str | None) -> str:
    if text is not None and file is not None:
        raise click.UsageError("pass TEXT or --file, not both")
    if text is None and file is None:
        raise click.UsageError("pass TEXT, --file FILE or --file - for standard input")
    if text == "-" or file == "-":
        content = sys.stdin.read()
        where = "standard input"
    elif file is not None:
        path = Path(file)
        try:
            content = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise click.ClickException(f"{file}: file not found") from None
        except IsADirectoryError:
            raise click.ClickException(f"{file}: is a directory, not a file") from None
        except (OSError, UnicodeDecodeError) as error:
            raise click.ClickException(f"{file}: cannot read: {error}") from None
        where = file
    else:
        assert text is not None
        content = text
        where = "TEXT"
    if not content.strip():
        raise click.ClickException(f"{where} is empty; nothing to scan")
    return content


def _read_request(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        request = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise click.ClickException(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{path}: cannot read: {error}") from None
    except json.JSONDecodeError as error:
        raise click.ClickException(
            f"{path}: invalid JSON at line {error.lineno}: {error.msg}"
        ) from None
    if not isinstance(request, dict):
        raise click.ClickException(f"{path}: the request must be a JSON object")
    return request


def _run_one(
    spec: ScannerSpec, scanner: Scanner, text: str, context: ScanContext
) -> dict[str, Any]:
    started = time.perf_counter()
    error: str | None = None
    try:
        detection = scanner.scan(text, context)
    except Exception as failure:  # noqa: BLE001 - shown as the scanner's result
        detection = Detection()
        error = f"{type(failure).__name__}: {failure}"
    elapsed = (time.perf_counter() - started) * 1000
    if error is None:
        triggered = detection.score >= spec.threshold
    else:
        # The engine treats a failed scanner as triggered when it fails closed.
        triggered = spec.on_error == "closed"
    return {
        "scanner": spec.label,
        "type": spec.type,
        "triggered": triggered,
        "threshold": spec.threshold,
        "action": spec.action if triggered else None,
        "score": round(detection.score, 4),
        "findings": [
            {**finding.attributes(), "rule": finding.rule}
            for finding in detection.findings
        ],
        "reason": detection.reason,
        "error": error,
        "ms": round(elapsed, 2),
        "windows_skipped": detection.windows_skipped,
    }


@guard.command("scan")
@click.argument("text", required=False)
@click.option(
    "--file",
    "file",
    default=None,
    metavar="FILE",
    help="Read the text from FILE, or from standard input with -.",
)
@click.option(
    "--policy",
    default=None,
    help="Policy to run [default: the config's guardrails.default, else pii,"
    " secrets and injection].",
)
@click.option(
    "--stage",
    type=click.Choice(["input", "output"]),
    default="input",
    show_default=True,
    help="Run the policy's input scanners (on a request) or output scanners"
    " (on an answer).",
)
@click.option(
    "--scanner",
    "kinds",
    multiple=True,
    metavar="TYPE",
    help="Run only scanners of this type (repeatable); the policy's settings"
    " are used where it has one.",
)
@click.option("--system-prompt", default=None, help="System prompt, for leak checks.")
@click.option("--canary", default=None, help="Canary token, for leak checks.")
@click.option(
    "--request",
    "request_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON request body, for scanners that read it (response_format).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--show-values",
    is_flag=True,
    help="Also print the matched text of each span (for local debugging only).",
)
@config_option
def scan(
    text: str | None,
    file: str | None,
    policy: str | None,
    stage: str,
    kinds: tuple[str, ...],
    system_prompt: str | None,
    canary: str | None,
    request_path: Path | None,
    as_json: bool,
    show_values: bool,
    config_path: Path | None,
) -> None:
    """Run a policy's scanners on TEXT (or --file) and show what each found.

    TEXT - reads standard input. Matched values are not shown unless
    --show-values is given.
    """
    content = _read_text(text, file)
    for kind in kinds:
        _check_type(kind)
        if stage not in stages(kind):
            allowed = " or ".join(sorted(stages(kind)))
            raise click.UsageError(
                f"scanner {kind!r} runs only on {allowed}; pass --stage {allowed}"
            )
    request = _read_request(request_path)
    config = resolve_config(config_path)
    policy_name, chosen = _policy(config.guardrails, policy)
    if kinds:
        specs = [spec for kind in kinds for spec in _spec_for(chosen, stage, kind)]
    else:
        specs = list(getattr(chosen, stage))
    if not specs:
        raise click.ClickException(f"policy {policy_name!r} has no {stage} scanners")
    scanners = [(spec, _build(spec)) for spec in specs]
    context = ScanContext(
        source="user" if stage == "input" else "output",
        request=request,
        system_prompt=system_prompt,
        canary=canary,
    )
    results = [_run_one(spec, scanner, content, context) for spec, scanner in scanners]
    if show_values:
        for result in results:
            for finding in result["findings"]:
                finding["value"] = content[finding["start"] : finding["end"]]
    if as_json:
        payload = {"policy": policy_name, "stage": stage, "results": results}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    click.echo(f"policy {policy_name}, {stage} stage, {len(content)} characters")
    rows = [_scan_row(result) for result in results]
    echo_table(
        [
            "SCANNER",
            "TRIGGERED",
            "THRESHOLD",
            "ACTION",
            "SCORE",
            "MS",
            "ENTITIES",
            "REASON",
        ],
        rows,
    )
    if show_values:
        for result in results:
            for finding in result["findings"]:
                click.echo(
                    f"{result['scanner']} {finding['type']}"
                    f"[{finding['start']}:{finding['end']}]: {finding['value']!r}"
                )


def _scan_row(result: dict[str, Any]) -> list[str]:
    entities = ", ".join(
        f"{finding['type']}[{finding['start']}:{finding['end']}]"
        for finding in result["findings"]
    )
    if result["error"] is not None:
        triggered = "error (closed)" if result["triggered"] else "error (open)"
        reason = result["error"]
    else:
        triggered = "yes" if result["triggered"] else "no"
        reason = result["reason"] or ""
    return [
        result["scanner"],
        triggered,
        f"{result['threshold']:g}",
        result["action"] or "-",
        f"{result['score']:.3f}",
        f"{result['ms']:.1f}",
        entities or "-",
        reason,
    ]


@guard.command("eval")
@click.option(
    "--dataset",
    "dataset_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Labelled JSONL file: span lines (entities) or label lines (label 0/1).",
)
@click.option(
    "--scanner",
    "kind",
    default=None,
    metavar="TYPE",
    help="Scanner for lines without a scanner field [default: injection for"
    " label lines, pii for span lines].",
)
@click.option(
    "--policy",
    default=None,
    help="Policy whose settings and thresholds the scanners use [default: the"
    " config's guardrails.default].",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="Score at which a scanner counts as triggered, from 0 to 1 [default:"
    " the policy's threshold, else 0.5].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@config_option
def eval_command(
    dataset_path: Path,
    kind: str | None,
    policy: str | None,
    threshold: float | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Measure precision, recall and F1 of scanners on a labelled file."""
    from keelway.guardrails.evaluate import DatasetError, evaluate, read_examples

    if kind is not None:
        _check_type(kind)
    try:
        examples = read_examples(dataset_path, kind)
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    kinds = list(dict.fromkeys(example.scanner for example in examples))
    for name in kinds:
        _check_type(name)
    config = resolve_config(config_path)
    _, chosen = _policy(config.guardrails, policy)
    scanners: dict[str, tuple[Scanner, float, ScanContext]] = {}
    for name in kinds:
        stage = "input" if "input" in stages(name) else "output"
        spec = _spec_for(chosen, stage, name)[0]
        context = ScanContext(source="user" if stage == "input" else "output")
        used = spec.threshold if threshold is None else threshold
        scanners[name] = (_build(spec), used, context)
    try:
        reports = evaluate(examples, scanners)
    except DatasetError as error:
        raise click.ClickException(f"{dataset_path}, {error}") from None
    if as_json:
        payload = {
            "dataset": str(dataset_path),
            "size": len(examples),
            "scanners": [report.as_dict() for report in reports],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(f"{dataset_path}: {len(examples)} examples")
    for report in reports:
        figures = report.as_dict()
        click.echo("")
        click.echo(
            f"scanner {report.scanner}: {report.size} examples, threshold"
            f" {report.threshold:g}, {report.errors} error(s)"
        )
        if report.shape == "spans":
            _echo_span_figures(figures)
        else:
            _echo_label_figures(figures)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _echo_span_figures(figures: dict[str, Any]) -> None:
    rows = [("all types", figures["overall"]), ("any type", figures["any_type"])]
    rows += [(name, counts) for name, counts in figures["by_type"].items()]
    echo_table(
        [
            "ENTITY",
            "PREDICTED",
            "CORRECT",
            "GOLD",
            "FOUND",
            "PRECISION",
            "RECALL",
            "F1",
        ],
        [
            [
                name,
                str(counts["predicted"]),
                str(counts["correct"]),
                str(counts["gold"]),
                str(counts["found"]),
                _number(counts["precision"]),
                _number(counts["recall"]),
                _number(counts["f1"]),
            ]
            for name, counts in rows
        ],
    )


def _echo_label_figures(figures: dict[str, Any]) -> None:
    rows = [("all", figures["overall"])]
    rows += [(f"technique {name}", c) for name, c in figures["by_technique"].items()]
    rows += [(f"source {name}", c) for name, c in figures["by_source"].items()]
    echo_table(
        ["GROUP", "N", "TP", "FP", "FN", "TN", "PRECISION", "RECALL", "F1", "FPR"],
        [
            [
                name,
                str(c["tp"] + c["fp"] + c["fn"] + c["tn"]),
                str(c["tp"]),
                str(c["fp"]),
                str(c["fn"]),
                str(c["tn"]),
                _number(c["precision"]),
                _number(c["recall"]),
                _number(c["f1"]),
                _number(c["fpr"]),
            ]
            for name, c in rows
        ],
    )
