"""Training throughput: our ViT against timm's ViT of the same shape, side by side in one run.

Measures images/s of forward + backward + optimizer step, interleaving the two models so that
machine noise hits both alike.

    python bench/train_throughput.py --arch vit_tiny_patch16_224 --batch-size 32 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
from torch import nn

from model import VisionTransformer, config_from_name


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


def images_per_second(
    model: nn.Module, batch: torch.Tensor, target: torch.Tensor, steps: int, autocast: bool
) -> float:
    """Time `steps` training steps (after one untimed warm-up step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    device_type = batch.device.type

    def step() -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            loss = nn.functional.cross_entropy(model(batch), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize()
    return steps * batch.shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_tiny_patch16_224", help="variant name")
    parser.add_argument("--depth", type=int, default=None, help="override the variant's depth")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    ours = VisionTransformer(
        config_from_name(args.arch, depth=args.depth, num_classes=args.num_classes)
    ).to(device)
    theirs = timm_twin(ours).to(device)
    ours.train()
    theirs.train()
    size = ours.config.image_size
    batch = torch.randn(args.batch_size, 3, size, size, device=device)
    target = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    autocast = device.type == "cuda"

    results: dict[str, list[float]] = {"vitserve": [], "timm": []}
    for _ in range(args.rounds):
        for name, net in (("vitserve", ours), ("timm", theirs)):
            results[name].append(images_per_second(net, batch, target, args.steps, autocast))
    print(
        f"{args.arch} depth={ours.config.depth} batch={args.batch_size} device={device} "
        f"threads={torch.get_num_threads()} torch={torch.__version__} timm={timm.__version__}"
    )
    for name, values in results.items():
        print(
            f"{name:>9}: median {statistics.median(values):8.1f} images/s "
            f"(min {min(values):.1f}, max {max(values):.1f}, {args.rounds} rounds)"
        )
    ratio = statistics.median(results["vitserve"]) / statistics.median(results["timm"])
    print(f"ratio vitserve/timm: {ratio:.3f}")


if __name__ == "__main__":
    main()
