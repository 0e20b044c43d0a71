"""Where an epoch's time went: waiting on the data loader, or computing.

The loop ends every optimizer step with a device sync (it reads the step's loss), so time spent
blocked on the loader is time the device had nothing queued: the share of it in the epoch is
how data-bound training was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class TimedBatches(Generic[T]):
    """An iterator of batches that adds up how long its consumer was blocked waiting for them."""

    def __init__(self, batches: Iterable[T]) -> None:
        self.batches = iter(batches)
        self.waited = 0.0  # seconds inside next()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        start = time.perf_counter()
        try:
            return next(self.batches)
        finally:
            self.waited += time.perf_counter() - start


@dataclass(frozen=True)
class EpochTiming:
    """One epoch's training time split into data wait and the rest (forward, backward,
    optimizer, mid-epoch checkpoints)."""

    seconds: float
    data_wait_s: float
    images: int  # over all ranks

    @property
    def compute_s(self) -> float:
        return max(0.0, self.seconds - self.data_wait_s)

    @property
    def data_bound_share(self) -> float:
        """Fraction of the epoch spent blocked on the loader (0: never; 1: always)."""
        return min(1.0, self.data_wait_s / self.seconds) if self.seconds > 0 else 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def fields(self) -> dict[str, float]:
        """The metrics.jsonl fields."""
        return {
            "images_per_s": self.images_per_s,
            "seconds": self.seconds,
            "data_wait_s": self.data_wait_s,
            "compute_s": self.compute_s,
            "data_bound_share": self.data_bound_share,
        }

    def line(self) -> str:
        """The per-epoch throughput line of the log."""
        bound = "data-bound" if self.data_bound_share > 0.05 else "compute-bound"
        return (
            f"{self.images_per_s:.0f} images/s; waited on data {self.data_wait_s:.2f} s of "
            f"{self.seconds:.2f} s ({100 * self.data_bound_share:.1f}%, {bound})"
        )
