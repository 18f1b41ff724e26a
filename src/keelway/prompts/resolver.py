"""Resolving prompt references on the gateway's hot path, with a cache.

Resolutions and the experiment running on each label are cached in
process. The cache is keyed to the registry generation, which every change
raises: each lookup first reads the generation (one primary-key read) and
drops the cache when it moved. A label move, rollback or removal therefore
reaches every replica on its next request, with no TTL to wait out. With
``check_interval`` above zero the generation is read at most that often, which
trades that guarantee for one store read less per request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from keelway.experiments.store import ExperimentRecord, ExperimentStore
from keelway.governance.errors import NotFound
from keelway.prompts.registry import PromptRegistry, Resolved
from keelway.prompts.versioning import PromptReference

# Bounds the cache when clients send many distinct references.
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Lookup:
    """A resolved reference and the experiment running on its label, if any."""

    resolved: Resolved
    experiment: ExperimentRecord | None


class PromptResolver:
    """Caches resolutions, dropping them whenever the registry generation moves."""

    def __init__(
        self,
        registry: PromptRegistry,
        experiments: ExperimentStore,
        check_interval: float = 0.0,
    ) -> None:
        self.registry = registry
        self.experiments = experiments
        self.check_interval = check_interval
        self._generation: int | None = None
        self._checked_at = 0.0
        self._entries: dict[str, Lookup | NotFound] = {}

    async def lookup(self, reference: PromptReference) -> Lookup:
        """Return what ``reference`` points at; raise NotFound when nothing does."""
        key = str(reference)
        now = time.monotonic()
        fresh = (
            self._generation is not None
            and self.check_interval > 0
            and now - self._checked_at < self.check_interval
        )
        if fresh:
            entry = self._entries.get(key)
            if entry is None:
                entry = await asyncio.to_thread(self._load, reference, None)
        else:
            entry = await asyncio.to_thread(self._load, reference, self._entries)
        if isinstance(entry, NotFound):
            raise NotFound(entry.message)
        return entry

    async def version(self, name: str, version: str) -> Resolved:
        """Return one exact version of a prompt, through the same cache."""
        reference = PromptReference(name, None, version)
        return (await self.lookup(reference)).resolved

    def _load(
        self,
        reference: PromptReference,
        entries: dict[str, Lookup | NotFound] | None,
    ) -> Lookup | NotFound:
        """Check the generation (unless ``entries`` is None), then resolve."""
        key = str(reference)
        if entries is not None:
            generation = self.registry.generation()
            self._checked_at = time.monotonic()
            if generation != self._generation:
                self._entries = {}
                self._generation = generation
            cached = self._entries.get(key)
            if cached is not None:
                return cached
        entry: Lookup | NotFound
        try:
            resolved = self.registry.resolve(reference)
        except NotFound as error:
            entry = error
        else:
            experiment = None
            if reference.label is not None:
                experiment = self.experiments.running(resolved.name, reference.label)
            entry = Lookup(resolved, experiment)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = entry
        return entry
