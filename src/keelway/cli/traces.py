"""``keelway traces`` and ``keelway usage``: read what the gateway recorded."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from keelway.cli.identity import current_principal, format_time
from keelway.cli.options import config_option, open_store, resolve_config
from keelway.store.traces import MIN_PREFIX, USAGE_GROUPS, TraceStore, UsageRow

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# Max characters of a score comment that ``traces show`` prints. The --json
# output contains the whole comment.
MAX_COMMENT_SHOWN = 200

SINCE_HELP = (
    "Only traces newer than this: a duration back from now in seconds, minutes, "
    "hours, days or weeks (90s, 30m, 24h, 7d, 2w) or an ISO date or time."
)


class SinceType(click.ParamType[datetime]):
    """A duration back from now (``30m``, ``7d``, ``2w``) or an ISO date or time."""

    name = "since"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        match = _DURATION.match(text)
        if match:
            amount, unit = int(match.group(1)), match.group(2)
            return datetime.now(UTC) - timedelta(**{_UNITS[unit]: amount})
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is neither a duration like 30m, 24h, 7d or 2w "
                "nor an ISO date",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _store(config_path: Path | None) -> TraceStore:
    """Open the trace store as a user with any role (see ``current_principal``)."""
    database = open_store(resolve_config(config_path))
    actor = current_principal(database)
    if not actor.grants:
        raise click.ClickException(f"{actor.name} has no role that may read traces")
    return TraceStore(database)


def _json(value: Any) -> str:
    return json.dumps(
        value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)
    )


def _tokens(trace: dict[str, Any]) -> str:
    if trace["input_tokens"] is None:
        return "-"
    prompt = (
        trace["input_tokens"] + trace["cache_read_tokens"] + trace["cache_write_tokens"]
    )
    mark = "~" if trace["usage_source"] == "estimated" else ""
    return f"{mark}{prompt}/{trace['output_tokens']}"


def _cost(value: float | None) -> str:
    return "unpriced" if value is None else f"${value:.6f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


@click.group()
def traces() -> None:
    """List and inspect traces."""


@traces.command("list")
@click.option(
    "--since",
    type=SinceType(),
    default=None,
    help=SINCE_HELP,
)
@click.option("--model", default=None, help="Only traces of this model.")
@click.option("--user", default=None, help="Only traces of this end user.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="Number of traces to show.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON lines, one trace per line."
)
@config_option
def list_traces(
    since: datetime | None,
    model: str | None,
    user: str | None,
    limit: int,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """List the newest traces."""
    rows = _store(config_path).recent(since=since, model=model, user=user, limit=limit)
    if as_json:
        for row in rows:
            click.echo(_json(row))
        return
    click.echo(
        f"{'TRACE':32}  {'TIME':19}  {'MODEL':20} {'STATUS':6} {'TOKENS':>12} "
        f"{'LATENCY':>8} {'TTFT':>7} {'COST':>12}"
    )
    for row in rows:
        click.echo(
            f"{row['id']:32}  {row['started_at']:%Y-%m-%d %H:%M:%S}  "
            f"{(row['model'] or '-')[:20]:20} "
            f"{row['http_status']:<6} {_tokens(row):>12} {_ms(row['latency_ms']):>8} "
            f"{_ms(row['ttft_ms']):>7} {_cost(row['cost_usd']):>12}"
        )


@traces.command("show")
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@config_option
def show_trace(trace_id: str, as_json: bool, config_path: Path | None) -> None:
    """Show one trace, by trace id or request id, with its spans and scores."""
    trace = _store(config_path).get(trace_id)
    if trace is None:
        raise click.ClickException(_not_found(trace_id))
    if as_json:
        click.echo(_json(trace))
        return
    fields = [
        ("trace", trace["id"]),
        ("request", trace["request_id"]),
        ("time", f"{trace['started_at']:%Y-%m-%d %H:%M:%S.%f}"[:-3]),
        ("route", trace["route"]),
        ("model", _model_line(trace)),
        ("key", f"{trace['key_name']} (team {trace['team'] or '-'})"),
        (
            "status",
            f"{trace['http_status']} {trace['status']}"
            + (
                f": {trace['error_type']}: {trace['error_message']}"
                if trace["error_type"]
                else ""
            ),
        ),
        ("stream", "yes" if trace["stream"] else "no"),
        ("latency", _ms(trace["latency_ms"])),
        ("ttft", _ms(trace["ttft_ms"])),
        ("tokens", _token_detail(trace)),
        (
            "cost",
            f"{_cost(trace['cost_usd'])}"
            f" (price table {trace['price_table_version'] or '-'})",
        ),
        ("user", trace["user"] or "-"),
        ("use case", trace["use_case"] or "-"),
        ("segment", trace["segment"] or "-"),
        ("prompt", _prompt_line(trace)),
        ("tags", ", ".join(trace["tags"] or []) or "-"),
    ]
    for label, value in fields:
        click.echo(f"{label:10} {value}")
    click.echo("spans:")
    for span in trace["spans"]:
        duration = "clock skew" if span["clock_skew"] else _ms(span["duration_ms"])
        error = f"  {span['error']}" if span["error"] else ""
        click.echo(f"  {span['name']:12} {duration:>10}  {span['status']}{error}")
    _echo_scores(trace["scores"])
    for label, key in (("request", "request_body"), ("response", "response_body")):
        if trace[key] is not None:
            size = f" ({trace[key.replace('body', 'size')]} bytes" + (
                ", truncated)" if trace[key.replace("body", "truncated")] else ")"
            )
            click.echo(f"{label}{size}:")
            click.echo(f"  {trace[key]}")


def _echo_scores(scores: list[dict[str, Any]]) -> None:
    """Print a trace's scores, oldest first with times in UTC, or print "none"."""
    if not scores:
        click.echo("scores:    none")
        return
    click.echo("scores:")
    for score in scores:
        line = (
            f"  {_one_line(score['name']):16} {score['value']:.2f}  "
            f"{_one_line(score['source']):12} by {_one_line(score['author'] or '-')}  "
            f"{format_time(score['created_at'])}"
        )
        if score["comment"]:
            line += f'  "{_one_line(score["comment"], MAX_COMMENT_SHOWN)}"'
        click.echo(line)


def _one_line(text: str, limit: int | None = None) -> str:
    """Return ``text`` on one line, control characters as spaces, cut to ``limit``.

    Comments and names come from client applications, so a newline or a
    terminal escape sequence in them must not reach the terminal as such.
    """
    printable = "".join(char if char.isprintable() else " " for char in text)
    collapsed = " ".join(printable.split())
    if limit is not None and len(collapsed) > limit:
        return collapsed[: limit - 1] + "…"
    return collapsed


def _prompt_line(trace: dict[str, Any]) -> str:
    """Format the prompt, with its registry version and experiment variant."""
    if not trace["prompt"]:
        return "-"
    line = str(trace["prompt"])
    if trace.get("prompt_version"):
        line += f"@{trace['prompt_version']}"
        label = ((trace.get("attributes") or {}).get("prompt") or {}).get("label")
        if label:
            line += f" (label {label})"
    if trace.get("experiment"):
        line += f", experiment {trace['experiment']} variant {trace['variant'] or '-'}"
    return line


def _not_found(trace_id: str) -> str:
    if len(trace_id) < MIN_PREFIX:
        return (
            f"no trace or request with id {trace_id!r}; a trace id prefix needs "
            f"at least {MIN_PREFIX} characters"
        )
    return f"no trace with id {trace_id!r}"


def _model_line(trace: dict[str, Any]) -> str:
    if trace["model"] is None:
        return "-"
    return (
        f"{trace['model']} via {trace['deployment']}"
        f" ({trace['provider']}: {trace['upstream_model']})"
    )


def _token_detail(trace: dict[str, Any]) -> str:
    if trace["input_tokens"] is None:
        return "-"
    source = trace["usage_source"]
    if source == "estimated":
        source += f" with {trace['usage_tokenizer']}"
    return (
        f"input {trace['input_tokens']}, cache read {trace['cache_read_tokens']}, "
        f"cache write {trace['cache_write_tokens']}, output {trace['output_tokens']} "
        f"(reasoning {trace['reasoning_tokens']}); {source}"
    )


@click.command()
@click.option(
    "--by",
    type=click.Choice(sorted(USAGE_GROUPS)),
    default="model",
    show_default=True,
    help="Group the sums by this field.",
)
@click.option(
    "--since",
    type=SinceType(),
    default=None,
    help=SINCE_HELP,
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON lines, one group per line."
)
@config_option
def usage(
    by: str, since: datetime | None, as_json: bool, config_path: Path | None
) -> None:
    """Sum requests, tokens and cost per group of traces, with user feedback.

    FEEDBACK counts the scores sent to POST /v1/feedback on the group's
    traces and FB MEAN is their mean value, where thumbs up is 1 and down
    is 0. A group without feedback shows "-" in both.
    """
    rows = _store(config_path).usage(by=by, since=since)
    if as_json:
        for row in rows:
            click.echo(_json(_usage_dict(by, row)))
        return
    click.echo(
        f"{by.upper():24} {'REQUESTS':>9} {'ERRORS':>7} {'INPUT':>10} {'CACHED':>10} "
        f"{'OUTPUT':>10} {'COST':>14} {'FEEDBACK':>9} {'FB MEAN':>8}"
    )
    for row in rows:
        cost = f"${row.cost_usd:.6f}" + ("*" if row.unpriced else "")
        cached = row.cache_read_tokens + row.cache_write_tokens
        feedback = "-" if row.feedback_count == 0 else str(row.feedback_count)
        mean = "-" if row.feedback_mean is None else f"{row.feedback_mean:.2f}"
        click.echo(
            f"{(row.group or '-')[:24]:24} {row.requests:>9} {row.errors:>7} "
            f"{row.input_tokens:>10} {cached:>10} "
            f"{row.output_tokens:>10} {cost:>14} {feedback:>9} {mean:>8}"
        )
    if any(row.unpriced for row in rows):
        click.echo(
            "* includes requests of models with no price, counted as unknown cost"
        )


def _usage_dict(by: str, row: UsageRow) -> dict[str, Any]:
    data = asdict(row)
    data[by] = data.pop("group")
    return data
