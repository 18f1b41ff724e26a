"""Model prices and the cost of a call.

Prices are USD per million tokens, as the vendors publish them. The cost of a
call in USD is the sum over the disjoint token counts of a
:class:`~keelway.tracing.usage.Usage`:

    (input_tokens * input + cache_read_tokens * cached_input
     + cache_write_tokens * cache_write + output_tokens * output) / 1e6

Reasoning tokens are a part of ``output_tokens`` and are not priced again.
The sum is taken in :class:`decimal.Decimal`, so it equals the figure worked
by hand from the table, and is returned as a float.

The shipped table is ``prices.yaml`` beside this module, and its ``version``
is the date of that edition. Config overrides replace or add entries and
change the version to ``"<version>+overrides"``, so a trace shows that config
prices were used. A per-deployment override wins over both.

A model id is looked up as given, then without a trailing snapshot date
(``gpt-4o-2024-08-06`` is priced as ``gpt-4o``), then without a provider
prefix (``openai/gpt-4o``). A prefix only selects an entry of that provider.
A model with no price costs ``None``, never 0, so an unknown cost is not
counted as free.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from keelway.config import PriceOverride
from keelway.tracing.usage import Usage

__all__ = ["Price", "PriceTable", "PriceTableError"]

_SHIPPED_TABLE = Path(__file__).with_name("prices.yaml")

_OVERRIDE_SOURCE = "config: pricing override"
_OVERRIDE_SUFFIX = "+overrides"
_MILLION = Decimal(1_000_000)

# A trailing snapshot date: "-2024-08-06" (OpenAI) or "-20250929" (Anthropic).
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")

# Prefixes accepted before a model id, mapped to the `provider` of the entry
# they may select, so "gemini/" selects Google entries as "google/" does.
_PREFIX_PROVIDERS = {
    "anthropic": "anthropic",
    "gemini": "google",
    "google": "google",
    "local": "local",
    "openai": "openai",
}

_ENTRY_FIELDS = frozenset(
    {"provider", "source", "as_of", "input", "output", "cached_input", "cache_write"}
)


class PriceTableError(Exception):
    """Error raised when the price table is missing, unreadable or invalid."""


@dataclass(frozen=True, slots=True, init=False)
class Price:
    """USD per million tokens for each kind of token, and where it came from."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    source: str

    def __init__(
        self,
        input: float,
        output: float,
        cached_input: float | None = None,
        cache_write: float | None = None,
        source: str = "",
    ) -> None:
        """Store the prices, defaulting a missing cache price to ``input``."""
        object.__setattr__(self, "input", float(input))
        object.__setattr__(self, "output", float(output))
        cached = input if cached_input is None else cached_input
        object.__setattr__(self, "cached_input", float(cached))
        written = input if cache_write is None else cache_write
        object.__setattr__(self, "cache_write", float(written))
        object.__setattr__(self, "source", source)

    @classmethod
    def from_override(cls, override: PriceOverride) -> Price:
        """Build a price from a ``pricing.overrides`` or deployment config entry."""
        return cls(
            input=override.input,
            output=override.output,
            cached_input=override.cached_input,
            cache_write=override.cache_write,
            source=_OVERRIDE_SOURCE,
        )

    def cost(self, usage: Usage) -> float:
        """Return the USD cost of ``usage`` at these prices."""
        total = (
            usage.input_tokens * _decimal(self.input)
            + usage.cache_read_tokens * _decimal(self.cached_input)
            + usage.cache_write_tokens * _decimal(self.cache_write)
            + usage.output_tokens * _decimal(self.output)
        )
        return float(total / _MILLION)


class PriceTable:
    """Prices by model id, with the version of the table they came from."""

    version: str

    def __init__(
        self,
        version: str,
        prices: Mapping[str, Price],
        providers: Mapping[str, str | None] | None = None,
    ) -> None:
        """Store ``prices`` by model id and the vendor of each id in ``providers``."""
        self.version = version
        self._prices = dict(prices)
        self._providers = dict(providers or {})

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, PriceOverride] | None = None,
        path: Path | None = None,
    ) -> PriceTable:
        """Read the table at ``path``, or the shipped one, and apply ``overrides``."""
        source = _SHIPPED_TABLE if path is None else path
        table = _parse(_read_yaml(source), str(source))
        if not overrides:
            return table
        prices = dict(table._prices)
        providers = dict(table._providers)
        for model, override in overrides.items():
            prices[model] = Price.from_override(override)
            # An added model has no known vendor, so any known prefix selects it.
            providers.setdefault(model, None)
        return cls(table.version + _OVERRIDE_SUFFIX, prices, providers)

    def models(self) -> list[str]:
        """Return the model ids in the table, sorted."""
        return sorted(self._prices)

    def lookup(self, model: str) -> Price | None:
        """Find the price of ``model`` by exact id, snapshot date or provider prefix."""
        key = self._resolve(model)
        if key is not None:
            return self._prices[key]
        prefix, separator, rest = model.partition("/")
        provider = _PREFIX_PROVIDERS.get(prefix.lower())
        if not separator or provider is None:
            return None
        key = self._resolve(rest)
        if key is None:
            return None
        entry_provider = self._providers.get(key)
        if entry_provider is not None and entry_provider != provider:
            return None
        return self._prices[key]

    def cost(
        self, model: str, usage: Usage, override: PriceOverride | None = None
    ) -> float | None:
        """Return the USD cost of ``usage`` on ``model``, or ``None`` if unpriced."""
        if override is not None:
            return Price.from_override(override).cost(usage)
        price = self.lookup(model)
        if price is None:
            return None
        return price.cost(usage)

    def _resolve(self, model: str) -> str | None:
        if model in self._prices:
            return model
        base = _DATE_SUFFIX.sub("", model)
        if base != model and base in self._prices:
            return base
        return None


def _decimal(value: float) -> Decimal:
    # The float's shortest repr ("0.075") is the figure written in the table,
    # while Decimal(0.075) would carry the binary rounding error.
    return Decimal(repr(value))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriceTableError(f"price table not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PriceTableError(f"cannot read price table {path}: {error}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PriceTableError(f"{path}: invalid YAML: {error}") from None


def _parse(data: Any, source: str) -> PriceTable:
    if not isinstance(data, dict):
        raise PriceTableError(f"{source}: expected a mapping at the top level")
    version = _date_text(data.get("version"))
    if version is None:
        raise PriceTableError(
            f"{source}: version: expected a non-empty string such as '2026-12-01'"
        )
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise PriceTableError(f"{source}: models: expected a mapping of model ids")
    prices: dict[str, Price] = {}
    providers: dict[str, str | None] = {}
    for model, entry in models.items():
        if not isinstance(model, str) or not model:
            raise PriceTableError(f"{source}: models: invalid model id {model!r}")
        prices[model], providers[model] = _parse_entry(entry, f"{source}: {model}")
    return PriceTable(version, prices, providers)


def _parse_entry(entry: Any, where: str) -> tuple[Price, str]:
    if not isinstance(entry, dict):
        raise PriceTableError(f"{where}: expected a mapping of prices")
    unknown = sorted(str(name) for name in entry if name not in _ENTRY_FIELDS)
    if unknown:
        raise PriceTableError(f"{where}: unknown field {', '.join(unknown)}")
    provider = _text_field(entry, "provider", where)
    source = _text_field(entry, "source", where)
    if "as_of" in entry and _date_text(entry["as_of"]) is None:
        raise PriceTableError(f"{where}: as_of: expected a date string")
    price = Price(
        input=_price_field(entry, "input", where),
        output=_price_field(entry, "output", where),
        cached_input=_optional_price_field(entry, "cached_input", where),
        cache_write=_optional_price_field(entry, "cache_write", where),
        source=source,
    )
    return price, provider


def _text_field(entry: dict[Any, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if value is None:
        raise PriceTableError(f"{where}: {name}: missing field")
    if not isinstance(value, str) or not value.strip():
        raise PriceTableError(f"{where}: {name}: expected a non-empty string")
    return value


def _price_field(entry: dict[Any, Any], name: str, where: str) -> float:
    value = entry.get(name)
    if value is None:
        raise PriceTableError(f"{where}: {name}: missing price")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PriceTableError(
            f"{where}: {name}: expected a number of USD per million tokens,"
            f" got {value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise PriceTableError(f"{where}: {name}: expected a price >= 0, got {value!r}")
    return float(value)


def _optional_price_field(entry: dict[Any, Any], name: str, where: str) -> float | None:
    if entry.get(name) is None:
        return None
    return _price_field(entry, name, where)


def _date_text(value: Any) -> str | None:
    # Unquoted YAML dates load as datetime.date, quoted ones as strings.
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        return value
    return None
