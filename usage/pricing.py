"""What a model's tokens cost: `ModelPrice` rows first, then the genai-prices
data bundled with pydantic-ai.

The bundled snapshot is all that is ever read: genai-prices fetches newer data
only inside an `UpdatePrices` context (pydantic-ai's
`prices.update_in_background`), which this server never opens, so pricing a
turn makes no network request.

A model string is `provider:model`; `openai-chat`/`openai-responses` price as
`openai`, `google-gla`/`google-vertex` as `google`, `bedrock` as `aws`. A model
neither knows has no price: `cost_of` answers None, never 0.

Public surface:
    Rates                   USD per million tokens of each class
    rates_for(model)        a model's Rates, or None when it has no known price
    cost_of(model, usage)   the USD cost of a usage dict, or None
    usd_string(value)       a cost as the API writes it (12 decimal places)
    prices_changed(...)     signal receiver: every process re-reads the rows

The rows are kept per process and read again when their generation (a value
in the shared cache, replaced whenever a row is saved or deleted) changes.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import transaction
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from usage.models import ModelPrice

logger = logging.getLogger(__name__)

MTOK = Decimal(1_000_000)
_PLACES = Decimal("0.000000000001")

_PROVIDERS = {
    "openai-chat": "openai",
    "openai-responses": "openai",
    "google-gla": "google",
    "google-vertex": "google",
    "gemini": "google",
    "bedrock": "aws",
    "grok": "x-ai",
    "xai": "x-ai",
}


@dataclass(frozen=True)
class Rates:
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal

    @property
    def highest(self) -> Decimal:
        """The dearest token class: what an allowance of N tokens may cost."""
        return max(self.input, self.output, self.cache_read, self.cache_write)

    def cost(self, usage: dict[str, Any]) -> Decimal:
        cache_read = int(usage.get("cache_read_tokens") or 0)
        cache_write = int(usage.get("cache_write_tokens") or 0)
        # Input tokens include the cached ones (as providers and pydantic-ai count).
        fresh = max(0, int(usage.get("input_tokens") or 0) - cache_read - cache_write)
        total = (
            fresh * self.input
            + int(usage.get("output_tokens") or 0) * self.output
            + cache_read * self.cache_read
            + cache_write * self.cache_write
        )
        return total / MTOK


#: Names the price table's contents: a new value on every committed change,
#: in whichever process, so every process reads the rows again once.
GENERATION_KEY = "usage:model-prices:generation"
_cached_rows: tuple[str, list[ModelPrice]] | None = None


def _generation() -> str | None:
    """The price table's current generation; None when the cache cannot say
    (unreachable): the rows are then read every time."""
    try:
        generation = cache.get(GENERATION_KEY)
        if generation is None:
            cache.add(GENERATION_KEY, uuid.uuid4().hex, timeout=None)
            generation = cache.get(GENERATION_KEY)
    except Exception:
        return None
    return generation if isinstance(generation, str) else None


def _price_rows() -> list[ModelPrice]:
    """Every `ModelPrice` row, read once per generation in this process (a
    turn's end asks a round trip to the cache instead of a query)."""
    global _cached_rows
    generation = _generation()
    cached = _cached_rows
    if generation is not None and cached is not None and cached[0] == generation:
        return cached[1]
    rows = list(ModelPrice.objects.all())
    if generation is not None:
        _cached_rows = (generation, rows)
    return rows


def prices_changed(**kwargs: Any) -> None:
    """`ModelPrice` saved or deleted: once committed, every process reads the
    rows again (a receiver of its post_save and post_delete signals)."""

    def new_generation() -> None:
        try:
            cache.set(GENERATION_KEY, uuid.uuid4().hex, timeout=None)
        except Exception:
            # Unreachable now: readers see no generation and read the rows.
            logger.warning("could not mark model prices changed", exc_info=True)

    transaction.on_commit(new_generation)


def _row_for(model: str) -> ModelPrice | None:
    """The exact row, else the most specific (longest) glob matching `model`."""
    rows = _price_rows()
    exact = [r for r in rows if r.model == model]
    if exact:
        return exact[0]
    globs = [r for r in rows if fnmatch.fnmatchcase(model, r.model)]
    return max(globs, key=lambda r: len(r.model), default=None)


def _split(model: str) -> tuple[str | None, str]:
    provider, sep, name = model.partition(":")
    if not sep:
        return None, model
    return _PROVIDERS.get(provider, provider), name


@functools.lru_cache(maxsize=1024)
def _in_bundle(provider: str | None, name: str) -> bool:
    """Whether the bundled data knows the model. Cached: the data never changes
    in a process, and a miss searches every model of the provider (~5 ms)."""
    try:
        get_snapshot().find_provider_model(name, None, provider, None)
    except LookupError:
        return False
    return True


def _bundled(model: str, usage: dict[str, Any]) -> Decimal | None:
    provider, name = _split(model)
    if not name or not _in_bundle(provider, name):
        return None
    try:
        return calc_price(
            Usage(
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                cache_read_tokens=int(usage.get("cache_read_tokens") or 0),
                cache_write_tokens=int(usage.get("cache_write_tokens") or 0),
            ),
            name,
            provider_id=provider,
        ).total_price
    except (LookupError, ValueError):
        return None


def _row_rates(row: ModelPrice) -> Rates:
    return Rates(
        row.input_usd_per_mtok,
        row.output_usd_per_mtok,
        _or(row.cache_read_usd_per_mtok, row.input_usd_per_mtok),
        _or(row.cache_write_usd_per_mtok, row.input_usd_per_mtok),
    )


def rates_for(model: str) -> Rates | None:
    row = _row_for(model)
    if row is not None:
        return _row_rates(row)
    # genai-prices prices usage, not rates: a million tokens of each class.
    per_class = {
        key: _bundled(model, {key: 1_000_000, "input_tokens": 1_000_000})
        if key.startswith("cache")
        else _bundled(model, {key: 1_000_000})
        for key in ("input_tokens", "output_tokens", "cache_read_tokens")
    }
    if per_class["input_tokens"] is None or per_class["output_tokens"] is None:
        return None
    cache_read = per_class["cache_read_tokens"]
    return Rates(
        per_class["input_tokens"],
        per_class["output_tokens"],
        per_class["input_tokens"] if cache_read is None else cache_read,
        per_class["input_tokens"],
    )


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def cost_of(model: str, usage: dict[str, Any]) -> Decimal | None:
    """The USD cost of `usage` (token counts by class) on `model`."""
    row = _row_for(model)
    if row is not None:
        return _row_rates(row).cost(usage)
    return _bundled(model, usage)


def usd_string(value: Decimal | None) -> str | None:
    # Fixed-point always: str() would write a zero as "0E-12".
    return None if value is None else format(value.quantize(_PLACES), "f")
