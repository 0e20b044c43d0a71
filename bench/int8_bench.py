"""CPU int8 against float32, side by side in one run: speed on a random ViT-Ti/16 at 224, and
accuracy on the bundled model's held-out MNIST digits.

    python bench/int8_bench.py [--variants qdq qdq-tensor qoperator ...] [--rounds 12]

Speed: ViT-Ti/16 at 224 with random weights (the graph our export writes, logits + attention),
quantized by `training.precision.quantize_int8` with each variant's options (calibrated on 64
random images: with random weights the ranges are all a calibration can learn), every graph on
its own session with the same threads; in each round every graph runs one batch, in a shuffled
order, and the report gives each graph's median img/s and the median of its per-round speed-up
over float32 (steady when the machine is shared).

Accuracy: the bundled model (app/default_model, ViT-Ti/4 at 28) quantized with the same
options, calibrated on 256 images of its MNIST training split, compared with float32 on the
1,000 held-out images it was evaluated on (`training.agreement.compare_graphs`).

A Markdown table on stdout; `--json FILE` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.model_config import MODEL_FILE, read_model_config  # noqa: E402
from app.settings import DEFAULT_MODEL_DIR, available_cores  # noqa: E402
from training.agreement import compare_graphs  # noqa: E402
from training.data.arrays import check_images  # noqa: E402
from training.onnx_export import INPUT_NAME, ort_session  # noqa: E402
from training.precision import Int8Options, quantize_int8  # noqa: E402

BASE = Int8Options()
VARIANTS: dict[str, Int8Options] = {
    # the default: QDQ, linear layers only, float outputs (MatMulIntegerToFloat), per channel
    "qdq": BASE,
    "qdq-tensor": replace(BASE, per_channel=False),
    "qdq-requant": replace(BASE, float_outputs=False),
    "qdq-all-matmuls": replace(BASE, weights_only=False),
    "qdq-optimized": replace(BASE, optimize=True),
    "qdq-reduce-range": replace(BASE, reduce_range=True),
    "qdq-percentile": replace(BASE, calibration_method="percentile"),
    "qoperator": replace(BASE, format="qoperator"),
    "qoperator-all-matmuls": replace(BASE, format="qoperator", weights_only=False),
}


@dataclass
class Row:
    variant: str
    images_per_s: float | None = None
    speedup: float | None = None
    agreement: float | None = None
    top1_fp32: float | None = None
    top1_int8: float | None = None


def export_vit_tiny_224(out_dir: Path) -> Path:
    """ViT-Ti/16 at 224, random weights (bench/serve_bench.py's model)."""
    sys.path.insert(0, str(REPO / "bench"))
    from serve_bench import export_vit_tiny

    return export_vit_tiny(out_dir) / MODEL_FILE


def speed(paths: dict[str, Path], batch: int, rounds: int, threads: int) -> dict[str, list[float]]:
    """Seconds per batch run of each graph, `rounds` interleaved rounds (after one warm-up)."""
    sessions = {name: ort_session(path, threads=threads) for name, path in paths.items()}
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    for session in sessions.values():
        session.run(None, {INPUT_NAME: x})
    times: dict[str, list[float]] = {name: [] for name in sessions}
    order = list(sessions)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            started = time.perf_counter()
            sessions[name].run(None, {INPUT_NAME: x})
            times[name].append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["qdq", "qoperator"], choices=VARIANTS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads; 0: all cores")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    threads = args.threads or available_cores()
    rows = {name: Row(name) for name in ["fp32", *args.variants]}
    random.seed(0)

    with tempfile.TemporaryDirectory(prefix="int8-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_speed:
            fp32 = export_vit_tiny_224(work / "vit-tiny")
            calibration = np.clip(
                np.random.default_rng(1).standard_normal((64, 3, 224, 224), dtype=np.float32),
                -1,
                1,
            )
            paths = {"fp32": fp32}
            for name in args.variants:
                paths[name] = quantize_int8(
                    fp32, work / f"tiny-{name}.onnx", calibration, VARIANTS[name]
                )
            times = speed(paths, args.batch, args.rounds, threads)
            for name, seconds in times.items():
                rows[name].images_per_s = args.batch / statistics.median(seconds)
                ratios = [f / s for f, s in zip(times["fp32"], seconds, strict=True)]
                rows[name].speedup = statistics.median(ratios)
                print(
                    f"speed {name}: {rows[name].images_per_s:.1f} img/s, x{rows[name].speedup:.2f}",
                    flush=True,
                )

        if not args.skip_accuracy:
            config = read_model_config(DEFAULT_MODEL_DIR)
            drawn = check_images("mnist", config.preprocess, 256, None)
            bundled = DEFAULT_MODEL_DIR / MODEL_FILE
            for name in args.variants:
                quantized = quantize_int8(
                    bundled, work / f"bundled-{name}.onnx", drawn.calibration.images, VARIANTS[name]
                )
                report = compare_graphs(
                    bundled, quantized, drawn.held_out.images, drawn.held_out.targets
                )
                rows[name].agreement = report.top1_agreement
                rows[name].top1_fp32 = report.reference_top1
                rows[name].top1_int8 = report.candidate_top1
                rows["fp32"].top1_fp32 = report.reference_top1
                print(f"accuracy {name}: {report.describe()}", flush=True)

    print()
    print(f"batch {args.batch}, {threads} intra-op threads, {args.rounds} interleaved rounds")
    print()
    print("| graph | img/s (ViT-Ti/16, 224) | x fp32 | top-1 agreement | top-1 fp32 | top-1 |")
    print("|---|---:|---:|---:|---:|---:|")

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}%"

    for row in rows.values():
        ips = "—" if row.images_per_s is None else f"{row.images_per_s:.1f}"
        speedup = "—" if row.speedup is None else f"{row.speedup:.2f}"
        top1 = row.top1_int8 if row.variant != "fp32" else row.top1_fp32
        print(
            f"| {row.variant} | {ips} | {speedup} | {pct(row.agreement)} | "
            f"{pct(row.top1_fp32)} | {pct(top1)} |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows.values()], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
