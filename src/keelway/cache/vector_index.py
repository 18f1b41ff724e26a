"""An in-process index of unit vectors, one matrix per partition.

A search is one matrix-vector product over the partition's rows, so its cost
grows with the partition, not with the whole cache. Rows are float32.
Removing a row moves the last row into its place, so add and remove are O(1)
apart from the occasional doubling of a partition's matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

_INITIAL_ROWS = 16


def unit_vector(values: object, dimensions: int | None = None) -> Vector:
    """Return ``values`` as a float32 unit vector, checking its shape and norm.

    Raises ValueError when ``values`` is not a flat, finite, non-zero vector,
    or does not have ``dimensions`` items when that is given.
    """
    vector = np.asarray(values, dtype=np.float32)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"embedding must be a flat vector, not shape {vector.shape}")
    if dimensions is not None and vector.size != dimensions:
        raise ValueError(
            f"embedding has {vector.size} dimensions, but the cache's vectors have"
            f" {dimensions}"
        )
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"embedding must be finite and non-zero, its norm is {norm}")
    result: Vector = vector / np.float32(norm)
    return result


@dataclass(frozen=True, slots=True)
class Match:
    """One row of a search result and its cosine similarity to the query."""

    id: str
    similarity: float


class _Partition:
    def __init__(self, dimensions: int) -> None:
        self.vectors: Vector = np.zeros((_INITIAL_ROWS, dimensions), np.float32)
        self.expires: npt.NDArray[np.float64] = np.zeros(_INITIAL_ROWS, np.float64)
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}

    def add(self, id: str, vector: Vector, expires_at: float) -> None:
        row = len(self.ids)
        if row == len(self.vectors):
            self.vectors = np.concatenate([self.vectors, np.zeros_like(self.vectors)])
            self.expires = np.concatenate([self.expires, np.zeros_like(self.expires)])
        self.vectors[row] = vector
        self.expires[row] = expires_at
        self.ids.append(id)
        self.rows[id] = row

    def remove(self, id: str) -> None:
        row = self.rows.pop(id)
        last = len(self.ids) - 1
        if row != last:
            moved = self.ids[last]
            self.vectors[row] = self.vectors[last]
            self.expires[row] = self.expires[last]
            self.ids[row] = moved
            self.rows[moved] = row
        self.ids.pop()


class VectorIndex:
    """Unit vectors by id, in named partitions, searched by cosine similarity.

    Every vector in the index has the dimension of the first one added.
    """

    def __init__(self) -> None:
        self._partitions: dict[str, _Partition] = {}
        self.dimensions: int | None = None

    def __len__(self) -> int:
        return sum(len(p.ids) for p in self._partitions.values())

    def partition_size(self, partition: str) -> int:
        """Return how many vectors ``partition`` holds."""
        found = self._partitions.get(partition)
        return len(found.ids) if found else 0

    def add(self, partition: str, id: str, vector: Vector, expires_at: float) -> None:
        """Add a unit vector under a new ``id``.

        Raises ValueError when ``id`` is already there or the dimension differs.
        """
        if self.dimensions is None:
            self.dimensions = vector.size
        elif vector.size != self.dimensions:
            raise ValueError(
                f"embedding has {vector.size} dimensions, but the cache's vectors"
                f" have {self.dimensions}"
            )
        target = self._partitions.get(partition)
        if target is None:
            target = self._partitions[partition] = _Partition(self.dimensions)
        if id in target.rows:
            raise ValueError(f"vector id {id!r} is already in the index")
        target.add(id, vector, expires_at)

    def remove(self, partition: str, id: str) -> None:
        """Remove ``id`` from ``partition`` if it is there."""
        target = self._partitions.get(partition)
        if target is None or id not in target.rows:
            return
        target.remove(id)
        if not target.ids:
            del self._partitions[partition]

    def expired(self, partition: str, now: float) -> list[str]:
        """Return the ids in ``partition`` whose expiry is at or before ``now``."""
        target = self._partitions.get(partition)
        if target is None:
            return []
        count = len(target.ids)
        rows = np.flatnonzero(target.expires[:count] <= now)
        return [target.ids[int(row)] for row in rows]

    def search(
        self,
        partition: str,
        query: Vector,
        threshold: float,
        limit: int,
        now: float,
    ) -> tuple[list[Match], float | None]:
        """Find the live rows of ``partition`` most similar to ``query``.

        Returns at most ``limit`` matches with similarity at least
        ``threshold``, most similar first, and the best similarity of any live
        row (None when the partition has none).
        """
        target = self._partitions.get(partition)
        if target is None:
            return [], None
        count = len(target.ids)
        similarities = target.vectors[:count] @ query
        live = target.expires[:count] > now
        if not live.any():
            return [], None
        best = float(similarities[live].max())
        rows = np.flatnonzero(live & (similarities >= threshold))
        if rows.size > limit:
            top = np.argpartition(-similarities[rows], limit - 1)[:limit]
            rows = rows[top]
        ordered = rows[np.argsort(-similarities[rows], kind="stable")]
        matches = [
            Match(target.ids[int(row)], float(similarities[row])) for row in ordered
        ]
        return matches, best
