"""The order in which training rows are visited: reproducible and resumable.

Rows are read from an endless stream of epochs, each a fresh permutation seeded by
(seed, epoch). The whole state is one integer, the position in that stream, so a resumed
run draws exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import torch


class DataOrder:
    def __init__(self, rows: int, seed: int, position: int = 0):
        if rows < 1:
            raise ValueError("DataOrder needs at least one row")
        self.rows, self.seed, self.position = rows, seed, position
        self._epoch, self._permutation = -1, []

    @property
    def epoch(self) -> int:
        return self.position // self.rows

    def _index_at(self, position: int) -> int:
        epoch = position // self.rows
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._epoch, self._permutation = epoch, torch.randperm(self.rows, generator=generator).tolist()
        return self._permutation[position % self.rows]

    def next_batch(self, size: int) -> list[int]:
        """The next `size` row indices (a batch may run into the next epoch)."""
        batch = [self._index_at(self.position + i) for i in range(size)]
        self.position += size
        return batch

    def state_dict(self) -> dict:
        return {"rows": self.rows, "seed": self.seed, "position": self.position}

    @classmethod
    def from_state(cls, state: dict) -> "DataOrder":
        return cls(state["rows"], state["seed"], state["position"])
