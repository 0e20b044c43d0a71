"""Bucketed batch sizes and IO binding, on a real onnxruntime CPU session of the tests' model:
the padding and the binding change nothing a caller sees."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from app.bound_session import BoundSession
from app.buckets import bucket_for, bucket_sizes, pad_batch
from app.model_config import INPUT_NAME, OUTPUT_NAMES
from app.session import load_model
from app.settings import Settings


def test_bucket_sizes() -> None:
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(32) == (1, 2, 4, 8, 16, 32)
    assert bucket_sizes(48) == (1, 2, 4, 8, 16, 32, 48)
    sizes = bucket_sizes(48)
    assert [bucket_for(n, sizes) for n in (1, 2, 3, 5, 16, 17, 33, 48)] == [
        1, 2, 4, 8, 16, 32, 48, 48
    ]  # fmt: skip
    for bad in (0, 49):
        with pytest.raises(ValueError, match="do not fit"):
            bucket_for(bad, sizes)
    with pytest.raises(ValueError):
        bucket_sizes(0)


def test_pad_batch() -> None:
    batch = np.arange(6, dtype=np.float32).reshape(3, 2)
    padded = pad_batch(batch, 4)
    assert padded.shape == (4, 2) and np.array_equal(padded[:3], batch) and not padded[3].any()
    assert pad_batch(batch, 3) is batch
    with pytest.raises(ValueError):
        pad_batch(batch, 2)


def batch_of(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, 32, 32), dtype=np.float32)


@pytest.fixture(scope="module")
def plain(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    return load_model(tiny_model_dir, Settings(providers="cpu", intra_op_threads=1))


@pytest.mark.parametrize(
    "options",
    [{"batch_buckets": True}, {"io_binding": True}, {"batch_buckets": True, "io_binding": True}],
)
def test_runs_answer_as_plain_runs(tiny_model_dir: Path, plain, options: dict) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(providers="cpu", intra_op_threads=1, max_batch_size=8, **options)
    model = load_model(tiny_model_dir, settings)
    assert (model.buckets is not None) == settings.bucketed
    assert (model.runner is not None) == settings.io_binding
    model.warm_up(8)
    for count in (1, 3, 5, 8):
        batch = batch_of(count, count)
        logits, attention = model.run(batch)
        want_logits, want_attention = plain.run(batch)
        assert logits.shape == want_logits.shape and attention.shape == want_attention.shape
        np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(attention, want_attention, rtol=1e-5, atol=1e-7)


def test_bound_session_reuses_its_buffers_across_threads(tiny_model_dir: Path, plain) -> None:  # type: ignore[no-untyped-def]
    bound = BoundSession(plain.session, INPUT_NAME, OUTPUT_NAMES, 4, (3, 32, 32), slots=2)
    results: dict[int, tuple[np.ndarray, ...]] = {}

    def work(seed: int) -> None:
        for _ in range(5):
            results[seed] = bound.run(batch_of(1 + seed % 4, seed))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed, (logits, _) in results.items():
        np.testing.assert_allclose(logits, plain.run(batch_of(1 + seed % 4, seed))[0], rtol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        bound.run(batch_of(5, 0))
