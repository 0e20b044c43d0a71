"""Bucketed batch sizes: every session run sees one of a few fixed batch sizes (powers of two up
to the max batch), so a CUDA graph or TensorRT engine per size can be captured in warm-up and
reused. Batches are padded with zeros up to their bucket; the padded rows are cut from the
outputs before anyone sees them."""

from __future__ import annotations

import bisect

import numpy as np


def bucket_sizes(max_batch_size: int) -> tuple[int, ...]:
    """1, 2, 4, ... below `max_batch_size`, and `max_batch_size` itself (a power of two or not)."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be positive, not {max_batch_size}")
    sizes = []
    size = 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch_size)
    return tuple(sizes)


def bucket_for(count: int, sizes: tuple[int, ...]) -> int:
    """The smallest bucket that holds `count` images."""
    index = bisect.bisect_left(sizes, count)
    if count < 1 or index == len(sizes):
        raise ValueError(f"{count} images do not fit the buckets {sizes}")
    return sizes[index]


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` (B, ...) with zero rows appended up to `size` rows (itself when B == size)."""
    if len(batch) == size:
        return batch
    if len(batch) > size:
        raise ValueError(f"a batch of {len(batch)} does not fit {size} rows")
    padded = np.zeros((size, *batch.shape[1:]), dtype=batch.dtype)
    padded[: len(batch)] = batch
    return padded
