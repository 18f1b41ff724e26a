"""``keelway route explain``: show where a complexity router sends a prompt."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import orjson

from keelway.cli.options import config_option, resolve_config


@click.group()
def route() -> None:
    """Inspect routing decisions."""


@route.command()
@click.argument("prompt")
@click.option(
    "--router",
    "router_name",
    default=None,
    help="Complexity router to ask [default: the only one in the config].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@config_option
def explain(
    prompt: str, router_name: str | None, as_json: bool, config_path: Path | None
) -> None:
    """Score PROMPT and show which model group a complexity router picks."""
    from keelway.config import ConfigError
    from keelway.providers.errors import ProviderError
    from keelway.routing import Router
    from keelway.routing.complexity import (
        ComplexityRouter,
        Decision,
        group_embedder,
    )

    config = resolve_config(config_path)
    if not config.routers:
        raise click.ClickException("the config defines no complexity routers")
    if router_name is None:
        if len(config.routers) > 1:
            names = ", ".join(sorted(config.routers))
            raise click.ClickException(f"pass --router; the config has {names}")
        router_name = next(iter(config.routers))
    spec = config.routers.get(router_name)
    if spec is None:
        names = ", ".join(sorted(config.routers))
        raise click.ClickException(
            f"no complexity router named {router_name!r}; the config has {names}"
        )

    try:
        router = Router.from_config(config)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    embed = (
        group_embedder(router, spec.embedding_model) if spec.embedding_model else None
    )
    complexity = ComplexityRouter(router_name, spec, embed)
    body = {"messages": [{"role": "user", "content": prompt}]}

    async def decide() -> Decision:
        if spec.embedding_model:
            await router.first(spec.embedding_model).provider.start()
        try:
            return await complexity.decide(body)
        finally:
            await router.close()

    try:
        decision = asyncio.run(decide())
    except ProviderError as error:
        raise click.ClickException(f"routing failed: {error}") from None
    if as_json:
        click.echo(orjson.dumps(decision.attributes()).decode())
        return
    click.echo(f"router   {decision.router}")
    click.echo(f"target   {decision.target}")
    click.echo(f"score    {decision.score:.2f}")
    for reason in decision.reasons:
        click.echo(f"  - {reason}")
