"""Tests for the price table and the cost of a call.

The golden costs are worked by hand from the shipped prices.yaml, in USD per
million tokens, so a change to those prices must change the figures here too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keelway.config import PriceOverride
from keelway.tracing.pricing import Price, PriceTable, PriceTableError
from keelway.tracing.usage import Usage

# An OpenAI chat completion usage object: 1000 prompt tokens of which 400
# were cache hits, 200 completion tokens of which 50 were reasoning.
OPENAI_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 200,
    "total_tokens": 1200,
    "prompt_tokens_details": {"cached_tokens": 400},
    "completion_tokens_details": {"reasoning_tokens": 50},
}

# An Anthropic messages usage object, where cache reads and writes are
# reported apart from input_tokens.
ANTHROPIC_USAGE = {
    "input_tokens": 1000,
    "cache_read_input_tokens": 2000,
    "cache_creation_input_tokens": 500,
    "output_tokens": 300,
}

VALID_ENTRY = """\
version: "2026-01-01"
models:
  test-model:
    provider: openai
    input: 1.0
    output: 2.0
    source: https://example.com/pricing
"""


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def write_table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped table -------------------------------------------------------


def test_shipped_table_version_is_date(table: PriceTable) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.version)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o1",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "claude-opus-4-5",
        "claude-opus-4-1",
        "claude-opus-4",
        "claude-sonnet-4-5",
        "claude-sonnet-4",
        "claude-3-7-sonnet",
        "claude-haiku-4-5",
        "claude-3-5-haiku",
        "claude-3-haiku",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash",
        "gemma-3-270m",
        "all-MiniLM-L6-v2",
    ],
)
def test_shipped_table_has_model(table: PriceTable, model: str) -> None:
    assert model in table.models()


def test_shipped_prices_name_source(table: PriceTable) -> None:
    for model in table.models():
        price = table.lookup(model)
        assert price is not None, model
        assert price.source, model


# --- golden costs ------------------------------------------------------------


def test_openai_usage_with_cache(table: PriceTable) -> None:
    # gpt-4o: input 2.50, cached_input 1.25, output 10.00.
    # Split: input 1000 - 400 = 600, cache read 400, output 200. The 50
    # reasoning tokens are already among the 200 output tokens.
    #   600 * 2.50 = 1500
    #   400 * 1.25 =  500
    #   200 * 10.0 = 2000
    #   total 4000 / 1e6 = 0.004 USD
    usage = Usage.from_openai(OPENAI_USAGE)
    assert table.cost("gpt-4o", usage) == 0.004


def test_reasoning_tokens_priced_once(table: PriceTable) -> None:
    without_reasoning = dict(OPENAI_USAGE, completion_tokens_details={})
    with_reasoning = Usage.from_openai(OPENAI_USAGE)
    plain = Usage.from_openai(without_reasoning)
    assert with_reasoning.reasoning_tokens == 50
    assert table.cost("gpt-4o", with_reasoning) == table.cost("gpt-4o", plain)


def test_anthropic_cache_read_write(table: PriceTable) -> None:
    # claude-sonnet-4-5: input 3.00, cache_write 3.75, cached_input 0.30,
    # output 15.00.
    #   1000 * 3.00 = 3000
    #   2000 * 0.30 =  600
    #    500 * 3.75 = 1875
    #    300 * 15.0 = 4500
    #   total 9975 / 1e6 = 0.009975 USD
    usage = Usage.from_anthropic(ANTHROPIC_USAGE)
    assert table.cost("claude-sonnet-4-5", usage) == 0.009975


def test_embedding_input_only(table: PriceTable) -> None:
    # text-embedding-3-small: input 0.02, so 1000 tokens cost
    # 1000 * 0.02 / 1e6 = 0.00002 USD.
    usage = Usage.from_openai({"prompt_tokens": 1000, "total_tokens": 1000})
    assert table.cost("text-embedding-3-small", usage) == 0.00002


def test_decimal_sum_is_exact() -> None:
    # One input token at 0.1 and one output token at 0.2 make 0.3 / 1e6 USD.
    # Summed in floats, 0.1 + 0.2 is 0.30000000000000004.
    price = Price(input=0.1, output=0.2)
    usage = Usage(input_tokens=1, output_tokens=1)
    assert (0.1 + 0.2) / 1e6 != 3e-07
    assert price.cost(usage) == 3e-07


# --- lookup ------------------------------------------------------------------


def test_dated_openai_snapshot(table: PriceTable) -> None:
    assert table.lookup("gpt-4o-2024-08-06") == table.lookup("gpt-4o")


def test_dated_anthropic_snapshot(table: PriceTable) -> None:
    dated = table.lookup("claude-sonnet-4-5-20250929")
    assert dated == table.lookup("claude-sonnet-4-5")


def test_dated_snapshot_golden_cost(table: PriceTable) -> None:
    # Priced as claude-sonnet-4-5: 0.009975 USD, worked above.
    usage = Usage.from_anthropic(ANTHROPIC_USAGE)
    assert table.cost("claude-sonnet-4-5-20250929", usage) == 0.009975


def test_exact_id_beats_snapshot(table: PriceTable) -> None:
    # gpt-4o-2024-05-13 has its own entry at 5.00 / 15.00 with no cache
    # discount, so stripping its date would price it wrongly.
    price = table.lookup("gpt-4o-2024-05-13")
    assert price is not None
    assert price.input == 5.0
    assert price.cached_input == 5.0


def test_provider_prefixed_openai(table: PriceTable) -> None:
    assert table.lookup("openai/gpt-4o") == table.lookup("gpt-4o")


def test_provider_prefixed_anthropic(table: PriceTable) -> None:
    prefixed = table.lookup("anthropic/claude-haiku-4-5-20251001")
    assert prefixed == table.lookup("claude-haiku-4-5")


def test_provider_prefixed_golden_cost(table: PriceTable) -> None:
    # Priced as gpt-4o: 0.004 USD, worked above.
    usage = Usage.from_openai(OPENAI_USAGE)
    assert table.cost("openai/gpt-4o", usage) == 0.004


def test_gemini_prefix_selects_google(table: PriceTable) -> None:
    assert table.lookup("gemini/gemini-2.5-flash") == table.lookup("gemini-2.5-flash")


def test_wrong_provider_prefix_misses(table: PriceTable) -> None:
    assert table.lookup("anthropic/gpt-4o") is None


def test_unknown_prefix_misses(table: PriceTable) -> None:
    assert table.lookup("someproxy/gpt-4o") is None


def test_unknown_model_costs_none(table: PriceTable) -> None:
    usage = Usage.from_openai(OPENAI_USAGE)
    assert table.lookup("no-such-model") is None
    assert table.cost("no-such-model", usage) is None


def test_bare_date_suffix_only(table: PriceTable) -> None:
    # Only a trailing date is stripped, not any trailing number.
    assert table.lookup("gpt-4o-2024") is None


def test_local_model_costs_zero(table: PriceTable) -> None:
    usage = Usage.from_openai(OPENAI_USAGE)
    cost = table.cost("gemma-3-270m", usage)
    assert cost is not None
    assert cost == 0.0


def test_local_embedding_costs_zero(table: PriceTable) -> None:
    usage = Usage.from_openai({"prompt_tokens": 1000, "total_tokens": 1000})
    assert table.cost("all-MiniLM-L6-v2", usage) == 0.0


# --- Price defaults ----------------------------------------------------------


def test_cache_prices_default_to_input() -> None:
    price = Price(input=2.0, output=8.0)
    assert price.cached_input == 2.0
    assert price.cache_write == 2.0


def test_openai_entry_cache_write_defaults(table: PriceTable) -> None:
    price = table.lookup("gpt-4o")
    assert price is not None
    assert price.cache_write == price.input


# --- overrides ---------------------------------------------------------------


def test_config_override_replaces_entry() -> None:
    # Overridden gpt-4o: input 1.00, output 2.00, cached_input defaults to
    # input. 600 * 1 + 400 * 1 + 200 * 2 = 1400, so 0.0014 USD.
    overrides = {"gpt-4o": PriceOverride(input=1.0, output=2.0)}
    table = PriceTable.load(overrides=overrides)
    usage = Usage.from_openai(OPENAI_USAGE)
    assert table.cost("gpt-4o", usage) == 0.0014


def test_config_override_marks_version(table: PriceTable) -> None:
    overrides = {"gpt-4o": PriceOverride(input=1.0, output=2.0)}
    overridden = PriceTable.load(overrides=overrides)
    assert overridden.version == table.version + "+overrides"


def test_no_overrides_keeps_version(table: PriceTable) -> None:
    assert PriceTable.load(overrides={}).version == table.version


def test_config_override_adds_model() -> None:
    # 1000 input tokens at 0.5 and 200 output tokens at 1.5:
    # 500 + 300 = 800, so 0.0008 USD.
    overrides = {"my-finetune": PriceOverride(input=0.5, output=1.5)}
    table = PriceTable.load(overrides=overrides)
    usage = Usage.from_openai({"prompt_tokens": 1000, "completion_tokens": 200})
    assert table.cost("my-finetune", usage) == 0.0008


def test_override_applies_to_snapshot() -> None:
    overrides = {"gpt-4o": PriceOverride(input=1.0, output=2.0)}
    table = PriceTable.load(overrides=overrides)
    usage = Usage.from_openai(OPENAI_USAGE)
    assert table.cost("gpt-4o-2024-08-06", usage) == 0.0014


def test_deployment_override_wins(table: PriceTable) -> None:
    # Deployment price for claude-sonnet-4-5: input 2, cached_input 0.2,
    # cache_write 2.5, output 10.
    #   1000 * 2.0 = 2000
    #   2000 * 0.2 =  400
    #    500 * 2.5 = 1250
    #    300 * 10  = 3000
    #   total 6650 / 1e6 = 0.00665 USD
    override = PriceOverride(input=2.0, output=10.0, cached_input=0.2, cache_write=2.5)
    usage = Usage.from_anthropic(ANTHROPIC_USAGE)
    assert table.cost("claude-sonnet-4-5", usage, override=override) == 0.00665


def test_deployment_override_beats_config() -> None:
    # The config price is 1 / 2 and the deployment price is 3 / 4, so
    # 1000 input * 3 + 200 output * 4 = 3800, which is 0.0038 USD.
    table = PriceTable.load(overrides={"m": PriceOverride(input=1.0, output=2.0)})
    usage = Usage.from_openai({"prompt_tokens": 1000, "completion_tokens": 200})
    override = PriceOverride(input=3.0, output=4.0)
    assert table.cost("m", usage, override=override) == 0.0038


def test_deployment_override_prices_unknown(table: PriceTable) -> None:
    usage = Usage.from_openai({"prompt_tokens": 1000, "completion_tokens": 200})
    override = PriceOverride(input=3.0, output=4.0)
    assert table.cost("no-such-model", usage, override=override) == 0.0038


# --- invalid tables ----------------------------------------------------------


def test_custom_table_path_loads(tmp_path: Path) -> None:
    table = PriceTable.load(path=write_table(tmp_path, VALID_ENTRY))
    assert table.version == "2026-01-01"
    assert table.models() == ["test-model"]


def test_invalid_yaml_raises(tmp_path: Path) -> None:
    path = write_table(tmp_path, "version: [unclosed\n")
    with pytest.raises(PriceTableError, match="invalid YAML"):
        PriceTable.load(path=path)


def test_missing_table_raises(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="not found"):
        PriceTable.load(path=tmp_path / "absent.yaml")


def test_negative_price_raises(tmp_path: Path) -> None:
    path = write_table(tmp_path, VALID_ENTRY.replace("input: 1.0", "input: -1.0"))
    with pytest.raises(PriceTableError, match=r"test-model: input: .*>= 0"):
        PriceTable.load(path=path)


def test_missing_price_raises(tmp_path: Path) -> None:
    path = write_table(tmp_path, VALID_ENTRY.replace("    output: 2.0\n", ""))
    with pytest.raises(PriceTableError, match="test-model: output: missing"):
        PriceTable.load(path=path)


def test_missing_source_raises(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace("    source: https://example.com/pricing\n", "")
    path = write_table(tmp_path, text)
    with pytest.raises(PriceTableError, match="test-model: source: missing"):
        PriceTable.load(path=path)


def test_text_price_raises(tmp_path: Path) -> None:
    path = write_table(tmp_path, VALID_ENTRY.replace("input: 1.0", 'input: "$1"'))
    with pytest.raises(PriceTableError, match="test-model: input: expected a number"):
        PriceTable.load(path=path)


def test_unknown_field_raises(tmp_path: Path) -> None:
    text = VALID_ENTRY.replace(
        "    input: 1.0\n", "    input: 1.0\n    cache_read: 0.1\n"
    )
    path = write_table(tmp_path, text)
    with pytest.raises(PriceTableError, match="test-model: unknown field cache_read"):
        PriceTable.load(path=path)


def test_missing_version_raises(tmp_path: Path) -> None:
    path = write_table(tmp_path, VALID_ENTRY.replace('version: "2026-01-01"\n', ""))
    with pytest.raises(PriceTableError, match="version"):
        PriceTable.load(path=path)


def test_unquoted_version_date_loads(tmp_path: Path) -> None:
    path = write_table(tmp_path, VALID_ENTRY.replace('"2026-01-01"', "2026-01-01"))
    assert PriceTable.load(path=path).version == "2026-01-01"


def test_non_mapping_table_raises(tmp_path: Path) -> None:
    path = write_table(tmp_path, "- just\n- a list\n")
    with pytest.raises(PriceTableError, match="mapping at the top level"):
        PriceTable.load(path=path)
