"""The model providers the gateway forwards to: where each lives by default, how it is given
the key, and one price table (US dollars per million tokens) for the usage it records."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import models


class Provider(models.TextChoices):
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI = "openai", "OpenAI"
    GOOGLE = "google", "Google Gemini"
    OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible (vLLM, Ollama, …)"


@dataclass(frozen=True)
class Wire:
    default_base_url: str
    key_header: str  # the header the real key goes in
    bearer: bool  # "Authorization: Bearer <key>" rather than the bare key


WIRES = {
    Provider.ANTHROPIC: Wire("https://api.anthropic.com", "x-api-key", bearer=False),
    Provider.OPENAI: Wire("https://api.openai.com", "authorization", bearer=True),
    Provider.GOOGLE: Wire(
        "https://generativelanguage.googleapis.com", "x-goog-api-key", bearer=False
    ),
    # No default: the team names its server.
    Provider.OPENAI_COMPATIBLE: Wire("", "authorization", bearer=True),
}


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: Decimal
    output: Decimal
    cache_read: Decimal


# By model name prefix, longest first wins; a model not listed costs 0 (self-hosted, unknown).
PRICES: dict[str, Price] = {
    "claude-opus-4": Price(Decimal("15"), Decimal("75"), Decimal("1.5")),
    "claude-sonnet-4": Price(Decimal("3"), Decimal("15"), Decimal("0.3")),
    "claude-haiku-4": Price(Decimal("1"), Decimal("5"), Decimal("0.1")),
    "gpt-4.1-mini": Price(Decimal("0.4"), Decimal("1.6"), Decimal("0.1")),
    "gpt-4.1": Price(Decimal("2"), Decimal("8"), Decimal("0.5")),
    "gpt-5-mini": Price(Decimal("0.25"), Decimal("2"), Decimal("0.025")),
    "gpt-5": Price(Decimal("1.25"), Decimal("10"), Decimal("0.125")),
    "gemini-2.5-pro": Price(Decimal("1.25"), Decimal("10"), Decimal("0.31")),
    "gemini-2.5-flash": Price(Decimal("0.3"), Decimal("2.5"), Decimal("0.075")),
}


def cost(model: str, input_tokens: int, output_tokens: int, cache_tokens: int) -> Decimal:
    """What a request cost at the table's prices (cache reads at their own price)."""
    prefixes = sorted((p for p in PRICES if model.startswith(p)), key=len, reverse=True)
    if not prefixes:
        return Decimal(0)
    price = PRICES[prefixes[0]]
    total = (
        price.input * input_tokens + price.output * output_tokens + price.cache_read * cache_tokens
    )
    return (total / Decimal(1_000_000)).quantize(Decimal("0.000001"))
