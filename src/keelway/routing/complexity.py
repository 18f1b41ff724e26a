"""Routing by task complexity: simple requests to a small model, hard ones to a big one.

A complexity router scores each request in [0, 1] and sends it to its
``complex`` group when the score reaches ``threshold``, else to ``simple``.
The score mixes two parts:

- cheap features of the request: its length in estimated tokens, code in
  it, reasoning cues ("step by step", "prove", "trade-offs"), tools, and
  the number of turns, each adding a fixed share;
- an embedding classifier trained from the labelled examples in the
  config: the last user turn's cosine similarity to the centroid of the
  complex examples minus that to the simple ones, through a logistic
  curve. Without an embedding model only the features count.

The decision, both parts and the features are recorded on the trace.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from keelway.config import ComplexityRouterConfig, Config
from keelway.providers.errors import ProviderError
from keelway.routing.router import Router

log = logging.getLogger(__name__)

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]

# Estimated tokens at which length alone adds its full share.
LONG_PROMPT_TOKENS = 1500
# Steepness of the logistic curve over the centroid similarity difference,
# which for MiniLM embeddings of one-sentence prompts lies within about ±0.3.
SIMILARITY_SCALE = 12.0

REASONING_CUES = (
    "step by step",
    "prove",
    "derive",
    "analyze",
    "analyse",
    "compare",
    "trade-off",
    "tradeoff",
    "explain why",
    "design",
    "architecture",
    "optimize",
    "optimise",
    "debug",
    "refactor",
    "algorithm",
    "complexity",
    "edge case",
    "reason about",
    "plan",
)
_CODE = re.compile(
    r"```|^\s*(def |class |import |from \S+ import |#include|function |const |SELECT )"
    r"|[;{}]\s*$",
    re.MULTILINE,
)
_WORD_BOUNDARY_CUES = tuple(
    re.compile(rf"\b{re.escape(cue)}") for cue in REASONING_CUES
)


@dataclass(frozen=True, slots=True)
class Features:
    """Cheap signals of how hard a request is."""

    tokens: int
    code: bool
    reasoning_cues: tuple[str, ...]
    tools: bool
    turns: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The model group a complexity router chose for a request, with its reasons."""

    router: str
    target: str
    score: float
    feature_score: float
    embedding_score: float | None
    features: Features
    reasons: list[str] = field(default_factory=list)

    def attributes(self) -> dict[str, Any]:
        """Return the decision as trace attributes."""
        data = asdict(self)
        data["features"]["reasoning_cues"] = list(self.features.reasoning_cues)
        return data


def request_text(body: dict[str, Any]) -> tuple[str, str]:
    """Return all message text and the last user turn's text."""
    texts: list[str] = []
    last_user = ""
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        text = _content_text(message.get("content"))
        texts.append(text)
        if message.get("role") == "user":
            last_user = text
    return "\n".join(texts), last_user


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "\n".join(parts)
    return ""


def extract_features(body: dict[str, Any]) -> Features:
    """Return the cheap features of a chat request."""
    text, _ = request_text(body)
    lowered = text.lower()
    cues = tuple(
        cue
        for cue, pattern in zip(REASONING_CUES, _WORD_BOUNDARY_CUES, strict=True)
        if pattern.search(lowered)
    )
    messages = body.get("messages")
    return Features(
        tokens=math.ceil(len(text) / 4),
        code=bool(_CODE.search(text)),
        reasoning_cues=cues,
        tools=bool(body.get("tools")),
        turns=len(messages) if isinstance(messages, list) else 0,
    )


def feature_score(features: Features) -> tuple[float, list[str]]:
    """Return the features' part of the score in [0, 1] and what added to it."""
    score = 0.0
    reasons = []
    length = min(1.0, features.tokens / LONG_PROMPT_TOKENS) * 0.3
    if length >= 0.05:
        score += length
        reasons.append(f"length {features.tokens} tokens (+{length:.2f})")
    if features.code:
        score += 0.25
        reasons.append("contains code (+0.25)")
    if features.reasoning_cues:
        cues = min(0.3, 0.15 * len(features.reasoning_cues))
        score += cues
        reasons.append(
            f"reasoning cues {', '.join(features.reasoning_cues)} (+{cues:.2f})"
        )
    if features.tools:
        score += 0.2
        reasons.append("uses tools (+0.20)")
    if features.turns > 6:
        score += 0.1
        reasons.append(f"{features.turns} turns (+0.10)")
    return min(1.0, score), reasons


class ComplexityRouter:
    """Scores requests and picks the simple or the complex model group."""

    def __init__(
        self, name: str, config: ComplexityRouterConfig, embed: Embed | None
    ) -> None:
        self.name = name
        self.config = config
        self.embed = embed if config.embedding_model else None
        self._centroids: tuple[list[float], list[float]] | None = None
        self._lock = asyncio.Lock()

    async def decide(self, body: dict[str, Any]) -> Decision:
        """Score a chat request and return where it goes."""
        features = extract_features(body)
        cheap, reasons = feature_score(features)
        try:
            learned = await self._embedding_score(body)
        except ProviderError as error:
            # The cheap features still decide, and the reasons record why alone.
            log.warning("complexity router %s: embedding failed: %s", self.name, error)
            reasons.append(f"embedding failed ({error.__class__.__name__})")
            learned = None
        if learned is None:
            score = cheap
        else:
            weight = self.config.embedding_weight
            score = (1 - weight) * cheap + weight * learned
            reasons.append(f"embedding classifier {learned:.2f} (weight {weight:g})")
        complex_ = score >= self.config.threshold
        target = self.config.complex if complex_ else self.config.simple
        reasons.append(
            f"score {score:.2f} {'>=' if complex_ else '<'} threshold"
            f" {self.config.threshold:g}"
        )
        return Decision(
            self.name,
            target,
            round(score, 4),
            round(cheap, 4),
            learned,
            features,
            reasons,
        )

    async def _embedding_score(self, body: dict[str, Any]) -> float | None:
        if self.embed is None:
            return None
        _, last_user = request_text(body)
        if not last_user.strip():
            return None
        complex_centroid, simple_centroid = await self._trained()
        (vector,) = await self.embed([last_user])
        difference = _cosine(vector, complex_centroid) - _cosine(
            vector, simple_centroid
        )
        return round(1 / (1 + math.exp(-SIMILARITY_SCALE * difference)), 4)

    async def _trained(self) -> tuple[list[float], list[float]]:
        """Embed the examples once and keep their centroids."""
        async with self._lock:
            if self._centroids is None:
                assert self.embed is not None
                examples = self.config.examples
                vectors = await self.embed([*examples.complex, *examples.simple])
                split = len(examples.complex)
                self._centroids = (
                    _centroid(vectors[:split]),
                    _centroid(vectors[split:]),
                )
            return self._centroids


def _centroid(vectors: Sequence[Sequence[float]]) -> list[float]:
    size = len(vectors[0])
    return [sum(v[i] for v in vectors) / len(vectors) for i in range(size)]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def group_embedder(router: Router, group: str) -> Embed:
    """Return an embedding function served by a model group's first deployment."""

    async def embed(texts: list[str]) -> list[list[float]]:
        deployment = router.first(group)
        result = await deployment.provider.embed({"model": group, "input": texts})
        data = sorted(result.body["data"], key=lambda item: item["index"])
        return [list(item["embedding"]) for item in data]

    return embed


def complexity_routers(config: Config, router: Router) -> dict[str, ComplexityRouter]:
    """Build every complexity router of the config."""
    return {
        name: ComplexityRouter(
            name,
            spec,
            group_embedder(router, spec.embedding_model)
            if spec.embedding_model
            else None,
        )
        for name, spec in config.routers.items()
    }
