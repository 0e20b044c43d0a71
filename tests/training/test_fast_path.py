"""The fast path: what it turns on where, and that each switch computes what the plain path does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from model.config import config_from_name
from model.vit import VisionTransformer
from training.config import TrainConfig, resolve
from training.distributed import World
from training.fast_path import compiled, decide
from training.loop import make_optimizer, train

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
TINY = {"arch": "vit_tiny_patch4_32", "depth": 1, "embed_dim": 48, "num_heads": 3}


def _tiny(seed: int = 0, **overrides: int | float) -> VisionTransformer:
    torch.manual_seed(seed)
    model = VisionTransformer(
        config_from_name("vit_tiny_patch4_32", depth=2, embed_dim=48, num_classes=10, **overrides)
    )
    head = model.head
    assert isinstance(head, torch.nn.Linear)
    torch.nn.init.normal_(head.weight, std=0.02)  # a zero head would leave blocks no grad
    return model


def _loss_and_grads(model: torch.nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    images, targets = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), targets)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), {n.removeprefix("_orig_mod."): g for n, g in grads.items()}  # compiled


def test_cuda_gets_the_fast_path_by_default_and_cpu_does_not() -> None:
    on_cuda = decide(TrainConfig(), CUDA)
    assert on_cuda.autocast and on_cuda.compile and on_cuda.fused_adamw and on_cuda.tf32
    assert on_cuda.pin_memory and not on_cuda.grad_checkpointing
    on_cpu = decide(TrainConfig(), CPU)
    assert not any(dataclasses.astuple(on_cpu))
    assert not decide(TrainConfig(optimizer="sgd"), CUDA).fused_adamw  # AdamW's kernel only
    forced = decide(TrainConfig(amp=True, compile=True, grad_checkpointing=True), CPU)
    assert forced.autocast and forced.compile and forced.grad_checkpointing
    assert not forced.tf32 and not forced.fused_adamw  # CUDA-only kernels stay off on CPU
    off = decide(TrainConfig(amp=False, compile=False, tf32=False), CUDA)
    assert not (off.autocast or off.compile or off.tf32)


def test_training_uses_the_fused_attention_kernel_and_maps_the_explicit_one() -> None:
    """Training never materialises attention probabilities; asking for maps does."""
    model = _tiny().train()
    images = torch.randn(2, 3, 32, 32)
    with profile(activities=[ProfilerActivity.CPU]) as fused:
        model(images).sum().backward()
    with profile(activities=[ProfilerActivity.CPU]) as explicit:
        model.forward_with_attention(images)
    fused_ops = {event.key for event in fused.key_averages()}
    explicit_ops = {event.key for event in explicit.key_averages()}
    assert "aten::scaled_dot_product_attention" in fused_ops
    assert "aten::softmax" not in fused_ops
    assert "aten::softmax" in explicit_ops
    assert "aten::scaled_dot_product_attention" not in explicit_ops


def _saved_bytes(model: torch.nn.Module) -> int:
    """Bytes autograd keeps from a training forward for the backward."""
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(8, 3, 32, 32))
    return saved


def test_activation_checkpointing_keeps_less_and_gives_the_same_gradients() -> None:
    plain = _tiny()
    checkpointed = _tiny()
    checkpointed.set_grad_checkpointing()
    # Only each block's input is kept: well under half of what the plain forward keeps.
    assert _saved_bytes(checkpointed) < 0.5 * _saved_bytes(plain)
    loss_a, grads_a = _loss_and_grads(plain)
    loss_b, grads_b = _loss_and_grads(checkpointed)
    assert loss_a == loss_b
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    checkpointed.eval()  # evaluation: the plain forward (nothing kept, nothing to recompute)
    assert _saved_bytes(checkpointed) == _saved_bytes(plain.eval())


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one() -> None:
    """torch.compile (inductor on CPU) of a tiny ViT: the same loss and gradients as eager up
    to float reassociation, and the same parameter names for checkpoints. Slow: compiling
    takes 30 s to minutes on 2 busy cores."""
    eager = _tiny()
    twin = _tiny()
    fast = decide(TrainConfig(compile=True), CPU)
    net = compiled(twin, fast)
    assert net is not twin
    loss_a, grads_a = _loss_and_grads(eager)
    loss_b, grads_b = _loss_and_grads(net)
    assert loss_b == pytest.approx(loss_a, rel=1e-5)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-3, atol=1e-5, msg=name)
    assert twin.state_dict().keys() == eager.state_dict().keys()


def test_fused_adamw_is_chosen_only_when_asked() -> None:
    model = _tiny()
    assert make_optimizer(model, TrainConfig(), fused=True).defaults["fused"] is True
    assert not make_optimizer(model, TrainConfig()).defaults["fused"]


def _curve(out: Path, amp: bool, device: torch.device) -> list[dict[str, float]]:
    """Two epochs on the 8x8 digits at their own size (2x2 patches, mean pooling): 88 steps."""
    options = {
        "data": "digits",
        "model": {**TINY, "arch": "vit_tiny_patch2_8", "global_pool": "avg"},
        "epochs": 2,
        "batch_size": 32,
        "lr": 3e-3,
        "warmup_epochs": 0.2,
        "label_smoothing": 0.0,
        "crop_scale": 0.8,
        "out": str(out),
        "progress": False,
        "checkpoint_every": 0,
        "amp": amp,
        "compile": False,
        "workers": 0,
    }
    train(resolve("pretrain", cli=options), World(device=device))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "device",
    [
        CPU,
        pytest.param(
            CUDA,
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
            ],
        ),
    ],
    ids=["cpu", "cuda"],
)
def test_bf16_loss_curve_follows_fp32(tmp_path: Path, device: torch.device) -> None:
    """The same short run in fp32 and under bf16 autocast: the loss curves agree within 1%
    epoch by epoch (measured here: 0.05% apart), and both learn."""
    fp32 = _curve(tmp_path / "fp32", False, device)
    bf16 = _curve(tmp_path / "bf16", True, device)
    for a, b in zip(fp32, bf16, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.01), (a, b)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=0.01), (a, b)
    for curve in (fp32, bf16):
        assert curve[1]["val_loss"] < curve[0]["val_loss"] - 0.01
        assert curve[1]["val_acc1"] > 0.15  # chance: 0.1
    assert fp32[-1]["train_loss"] != bf16[-1]["train_loss"]  # autocast changed the arithmetic


@pytest.mark.slow
def test_a_compiled_run_matches_an_eager_run(tmp_path: Path) -> None:
    """`--compile` through the loop on CPU: the same curve as eager up to float reassociation,
    checkpoints with plain parameter names."""
    lines = {}
    for mode in (False, True):
        out = tmp_path / f"compile_{mode}"
        options = {
            "data": "digits",
            "model": TINY,
            "epochs": 1,
            "batch_size": 128,
            "out": str(out),
            "progress": False,
            "compile": mode,
            "workers": 0,
        }
        train(resolve("pretrain", cli=options), World())
        lines[mode] = json.loads((out / "metrics.jsonl").read_text())
        state = torch.load(out / "last.pt", weights_only=False)
        assert not any(name.startswith("_orig_mod") for name in state["model"])
    for key in ("train_loss", "val_loss"):
        assert lines[True][key] == pytest.approx(lines[False][key], rel=1e-3), key
