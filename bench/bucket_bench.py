"""Bucketed batch sizes and IO binding on the CPU: the same batches, of sizes drawn at random
from 1..max batch (what dynamic batching hands the session under uneven load), run by
`app.session.OnnxModel` as served by default, padded to buckets, through IO binding, and both;
interleaved rounds, img/s of the real (unpadded) images.

    python bench/bucket_bench.py [--model-dir app/default_model] [--max-batch 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.session import load_model  # noqa: E402
from app.settings import DEFAULT_MODEL_DIR, Settings  # noqa: E402

MODES = {
    "default": {},
    "buckets": {"batch_buckets": True},
    "io binding": {"io_binding": True},
    "buckets + io binding": {"batch_buckets": True, "io_binding": True},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="batches per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    models = {
        name: load_model(
            args.model_dir,
            Settings(providers="cpu", max_batch_size=args.max_batch, **options),  # type: ignore[arg-type]
        )
        for name, options in MODES.items()
    }
    shape = next(iter(models.values())).input_shape
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, args.max_batch + 1, args.batches)
    batches = [rng.standard_normal((int(n), *shape), dtype=np.float32) for n in sizes]
    for model in models.values():
        model.warm_up(args.max_batch)
    rates: dict[str, list[float]] = {name: [] for name in models}
    random.seed(0)
    for _ in range(args.rounds):
        order = list(models)
        random.shuffle(order)
        for name in order:
            started = time.perf_counter()
            for batch in batches:
                models[name].run(batch)
            rates[name].append(int(sizes.sum()) / (time.perf_counter() - started))
    print(
        f"{args.model_dir.name}, batches of 1..{args.max_batch} (mean {sizes.mean():.1f}), "
        f"{args.rounds} interleaved rounds"
    )
    print()
    print("| mode | img/s | x default |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        ratio = statistics.median(v / d for v, d in zip(values, rates["default"], strict=True))
        print(f"| {name} | {statistics.median(values):.0f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
