"""Training throughput: our ViT against timm's VisionTransformer of the same shape, on one device.

Times forward + backward + optimizer step with everything else equal: the same batch, the same
precision and optimizer (both from `training.fast_path.decide`: bf16 autocast, fused AdamW and
TF32 on CUDA), eager and `torch.compile`d alike. Within a compile mode the two models alternate
round by round, so machine noise hits both. Prints (and with --out writes) a markdown table:
images/s (median of the rounds), peak device memory of a step, the first step's seconds
(compilation), and ours/timm.

    python bench/train_throughput.py --device cuda --arch vit_base_patch16_224 \\
        vit_small_patch16_224 --batch-size 256 --compile both        # the GPU table
    python bench/train_throughput.py --device cpu --arch vit_tiny_patch4_32 --depth 2 \\
        --batch-size 32 --compile both --steps 10 --rounds 5         # CPU, small
"""

from __future__ import annotations

import argparse
import datetime
import gc
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import VisionTransformer, config_from_name  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.fast_path import FastPath, apply_backend, compiled, decide  # noqa: E402
from training.loop import make_optimizer  # noqa: E402


def timm_twin(model: VisionTransformer) -> nn.Module:
    """timm's VisionTransformer with the same shape as ours."""
    c = model.config
    return timm.models.vision_transformer.VisionTransformer(
        img_size=c.image_size,
        patch_size=c.patch_size,
        num_classes=c.num_classes,
        embed_dim=c.embed_dim,
        depth=c.depth,
        num_heads=c.num_heads,
        mlp_ratio=c.mlp_ratio,
        qkv_bias=c.qkv_bias,
        global_pool=c.global_pool,
    )


def resident_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Device memory a model holds between steps: parameters, gradients, optimizer state."""
    tensors: list[torch.Tensor] = list(model.parameters())
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    tensors += [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


@dataclass
class Contender:
    """One model in one compile mode, with its optimizer and measurements."""

    name: str
    module: nn.Module  # what forward is called on (compiled or not)
    params: nn.Module  # the parameters' owner
    optimizer: torch.optim.Optimizer
    rates: list[float] = field(default_factory=list)
    first_step_s: float = 0.0
    peak_bytes: int = 0


def train_step(c: Contender, batch: torch.Tensor, target: torch.Tensor, fast: FastPath) -> None:
    with torch.autocast(batch.device.type, torch.bfloat16, enabled=fast.autocast):
        loss = nn.functional.cross_entropy(c.module(batch).float(), target)
    c.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    c.optimizer.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    c: Contender,
    others: list[Contender],
    batch: torch.Tensor,
    target: torch.Tensor,
    steps: int,
    fast: FastPath,
) -> None:
    """One round: `steps` timed steps. On CUDA also the step's peak memory, counted as if the
    model were alone on the device (the other models' resident state taken out)."""
    device = batch.device
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(c, batch, target, fast)
    sync(device)
    c.rates.append(steps * batch.shape[0] / (time.perf_counter() - start))
    if device.type == "cuda":
        others_bytes = sum(resident_bytes(o.params, o.optimizer) for o in others)
        c.peak_bytes = max(c.peak_bytes, torch.cuda.max_memory_allocated(device) - others_bytes)


def contenders(
    arch: str, args: argparse.Namespace, fast: FastPath, device: torch.device
) -> list[Contender]:
    torch.manual_seed(0)
    ours = VisionTransformer(
        config_from_name(
            arch, depth=args.depth, image_size=args.image_size, num_classes=args.num_classes
        )
    )
    made = []
    for name, model in (("vitserve", ours), (f"timm {timm.__version__}", timm_twin(ours))):
        model.to(device).train()
        optimizer = make_optimizer(model, TrainConfig(lr=1e-4), fused=fast.fused_adamw)
        made.append(Contender(name, compiled(model, fast), model, optimizer))
    return made


def run_arch(
    arch: str, compile_modes: list[bool], args: argparse.Namespace, device: torch.device
) -> list[list[str]]:
    rows = []
    for compile_on in compile_modes:
        fast = decide(TrainConfig(amp=args.amp, compile=compile_on), device)
        apply_backend(fast)
        pair = contenders(arch, args, fast, device)
        size = config_from_name(arch, image_size=args.image_size).image_size
        batch = torch.randn(args.batch_size, 3, size, size, device=device)
        target = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
        for c in pair:  # warm-up: compilation, allocator, kernel selection
            start = time.perf_counter()
            train_step(c, batch, target, fast)
            sync(device)
            c.first_step_s = time.perf_counter() - start
            for _ in range(args.warmup - 1):
                train_step(c, batch, target, fast)
        for _ in range(args.rounds):
            for c in pair:
                measure(c, [o for o in pair if o is not c], batch, target, args.steps, fast)
        ours_rate = statistics.median(pair[0].rates)
        for c in pair:
            rate = statistics.median(c.rates)
            memory = f"{c.peak_bytes / 2**30:.2f}" if device.type == "cuda" else "n/a"
            rows.append(
                [
                    arch,
                    str(args.batch_size),
                    "bf16" if fast.autocast else "fp32",
                    "compiled" if compile_on else "eager",
                    c.name,
                    f"{rate:.1f} ({min(c.rates):.1f}-{max(c.rates):.1f})",
                    memory,
                    f"{c.first_step_s:.1f}",
                    f"{ours_rate / rate:.3f}",
                ]
            )
        del pair, batch, target
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


HEADER = [
    "arch",
    "batch",
    "precision",
    "mode",
    "model",
    "images/s, median (min-max)",
    "peak memory GiB",
    "first step s",
    "vitserve / this",
]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def describe(device: torch.device) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return (
        f"{where}; torch {torch.__version__}, timm {timm.__version__}, "
        f"{torch.get_num_threads()} CPU threads; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["vit_small_patch16_224"], help="variants")
    parser.add_argument("--depth", type=int, default=None, help="override the variants' depth")
    parser.add_argument("--image-size", type=int, default=None, help="override the input side")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (>= 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--compile",
        choices=("off", "on", "both"),
        default=None,
        help="eager, compiled, or both (default: both on CUDA, off on CPU)",
    )
    parser.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: the training default, on for CUDA only)",
    )
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1")
    device = torch.device(args.device)
    mode = args.compile or ("both" if device.type == "cuda" else "off")
    compile_modes = {"off": [False], "on": [True], "both": [False, True]}[mode]

    rows = [row for arch in args.arch for row in run_arch(arch, compile_modes, args, device)]
    text = f"{describe(device)}\n\n{markdown(rows)}"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
