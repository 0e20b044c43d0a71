"""What the in-graph attention map costs: ViT-Ti/16 at 224 (random weights) exported

  logits   logits only, fused attention (plain `model.forward`), opset 18 like our export:
           the baseline; at this opset the exporter spells scaled_dot_product_attention out
  logits23 the same at opset 23, where it becomes one fused ONNX `Attention` op
  explicit logits only, explicit softmax attention (what the rollout needs, without it)
  ours     logits + attention, the exported graph (`training.onnx_graph.ViTWithAttention`)
  vector   logits + attention, `model.rollout.cls_attention_rollout` traced as written
  naive    logits + attention, the full-matrix rollout `model.rollout.attention_rollout`

run with onnxruntime on the CPU (ORT_ENABLE_ALL, the same threads, spinning off) in
interleaved rounds; reports each graph's median wall-clock and CPU time per run and its overhead
over the logits-only baselines, both as a ratio of medians and as the median of per-round
ratios (steadier when the machine is shared). `--profile N` adds the share of onnxruntime's
kernel time spent in the rollout's own nodes.

    python bench/attention_overhead.py --batch 8 --rounds 60 --profile 10
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.cores import available_cores  # noqa: E402
from model.config import config_from_name  # noqa: E402
from model.rollout import attention_rollout, cls_attention_rollout  # noqa: E402
from model.vit import VisionTransformer  # noqa: E402
from training.onnx_export import OPSET, export_onnx, ort_session  # noqa: E402
from training.onnx_graph import ViTLogits, ViTWithAttention  # noqa: E402

GRAPHS = ["logits", "logits23", "explicit", "ours", "vector", "naive"]


class ExplicitLogits(nn.Module):
    """Logits alone by the explicit attention path: its cost apart from the rollout's."""

    def __init__(self, model: VisionTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.model.forward_with_attention(pixel_values)[0]


class LibraryRollout(nn.Module):
    """Logits + attention with one of model/rollout.py's functions, traced as written."""

    def __init__(self, model: VisionTransformer, full_matrix: bool) -> None:
        super().__init__()
        self.model = model
        self.rollout = attention_rollout if full_matrix else cls_attention_rollout

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        logits, attentions = self.model.forward_with_attention(pixel_values)
        return logits, self.rollout(attentions, self.model.config.grid_size)


def build(arch: str, out: Path, names: Sequence[str]) -> dict[str, Path]:
    """Export the variants named in `names` of one random model; returns their ONNX paths."""
    torch.manual_seed(0)
    model = VisionTransformer(config_from_name(arch)).eval()
    assert isinstance(model.head, nn.Linear)
    nn.init.normal_(model.head.weight, std=0.02)
    modules: dict[str, nn.Module] = {
        "logits": ViTLogits(model),
        "logits23": ViTLogits(model),
        "explicit": ExplicitLogits(model),
        "ours": ViTWithAttention(model),
        "vector": LibraryRollout(model, full_matrix=False),
        "naive": LibraryRollout(model, full_matrix=True),
    }
    paths = {}
    for name in names:
        opset = 23 if name == "logits23" else OPSET
        paths[name] = export_onnx(
            modules[name], out / f"{name}.onnx", model.config.image_size, opset
        )
        ops = onnx.load(str(paths[name]), load_external_data=False).graph.node
        print(f"exported {name}: {len(ops)} nodes", flush=True)
    return paths


def bench(
    paths: dict[str, Path], batch: int, image_size: int, rounds: int, warmup: int, threads: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and CPU seconds (all of this process's threads) per run of each graph, in
    `rounds` interleaved rounds in a shuffled order each. With spinning off, CPU time counts
    the work done, and other processes on the machine inflate it far less than wall time."""
    sessions = {name: ort_session(path, threads=threads) for name, path in paths.items()}
    x = np.random.default_rng(0).standard_normal((batch, 3, image_size, image_size))
    feed = {"pixel_values": x.astype(np.float32)}
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    wall: dict[str, list[float]] = {name: [] for name in sessions}
    cpu: dict[str, list[float]] = {name: [] for name in sessions}
    order = list(sessions)
    shuffle = random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            sessions[name].run(None, feed)
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return wall, cpu


def _is_rollout(node: onnx.NodeProto) -> bool:
    """A node the wrapper adds outside the ViT's modules: the rollout (and the head's class-token
    select, a copy of B x D floats). The exporter records each node's module path."""
    namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
    parts = namespace.split("/")
    return len(parts) == 2 and not parts[1].startswith("model")


def rollout_share(path: Path, batch: int, image_size: int, runs: int, threads: int) -> float:
    """Fraction of onnxruntime's kernel time spent in rollout nodes, from its profiler: a
    measure that contention on a shared machine inflates for all nodes alike."""
    import onnxruntime as ort

    rollout = {n.name for n in onnx.load(str(path)).graph.node if _is_rollout(n)}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, image_size, image_size))
    for _ in range(runs):
        session.run(None, {"pixel_values": x.astype(np.float32)})
    events = json.loads(Path(session.end_profiling()).read_text())
    total = in_rollout = 0.0
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        total += event["dur"]
        if event["name"].removesuffix("_kernel_time") in rollout:
            in_rollout += event["dur"]
    return in_rollout / total


def report(times: dict[str, list[float]], what: str) -> None:
    """Median latency per graph and its overhead against each logits-only baseline: as a ratio
    of medians, and as the median of per-round ratios."""
    baselines = [b for b in ("logits", "logits23") if b in times]
    header = "".join(f" {'vs ' + b + ' (medians)':>22} {'(paired)':>9}" for b in baselines)
    print(f"{what}\n{'graph':8} {'median ms':>10}{header}")
    for name, values in times.items():
        median = statistics.median(values)
        line = f"{name:8} {1e3 * median:10.1f}"
        for b in baselines:
            base = times[b]
            paired = statistics.median(v / t for v, t in zip(values, base, strict=True))
            line += f" {100 * (median / statistics.median(base) - 1):21.1f}%"
            line += f" {100 * (paired - 1):8.1f}%"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="vit_tiny_patch16_224")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="default: every available core")
    parser.add_argument(
        "--graphs",
        nargs="+",
        default=GRAPHS,
        choices=GRAPHS,
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="also profile N runs of each rollout graph"
    )
    args = parser.parse_args()
    names = ["logits", *[g for g in args.graphs if g != "logits"]]
    threads = args.threads or available_cores()
    with tempfile.TemporaryDirectory() as tmp:
        paths = build(args.arch, Path(tmp), names)
        image_size = config_from_name(args.arch).image_size
        print(
            f"{args.arch}, batch {args.batch}, {threads} threads, {args.rounds} rounds, "
            f"onnxruntime CPU, ORT_ENABLE_ALL",
            flush=True,
        )
        wall, cpu = bench(paths, args.batch, image_size, args.rounds, args.warmup, threads)
        report(wall, "wall-clock time per run:")
        report(cpu, "CPU time per run (all threads):")
        if args.profile:
            print(f"share of kernel time in rollout nodes ({args.profile} profiled runs each):")
            for name in [n for n in names if n not in ("logits", "logits23", "explicit")]:
                share = rollout_share(paths[name], args.batch, image_size, args.profile, threads)
                print(f"{name:8} {100 * share:5.1f}%")


if __name__ == "__main__":
    main()
