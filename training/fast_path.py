"""How a run uses its device: every speed switch decided here, once, from the config and device.

On CUDA the defaults are the fast path: bf16 autocast, `torch.compile`, fused AdamW, TF32 for
what stays in fp32, pinned batches copied with `non_blocking`. On CPU they are off: bf16 is
emulated on CPUs without bf16 units, and compiling did not pay for our models there
(docs/training.md, "Training on GPUs", has the measurement). Every switch can be forced either
way from the command line; the loop and `bench/train_throughput.py` both read this one answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from training.config import TrainConfig


@dataclass(frozen=True)
class FastPath:
    """What a run turns on; see `decide`."""

    autocast: bool  # bf16 autocast of forward and loss (backward follows it)
    compile: bool  # torch.compile of the model (training graph; evaluation stays eager)
    fused_adamw: bool  # AdamW's step as one fused kernel over all parameters
    tf32: bool  # TF32 tensor cores for fp32 matmuls and convolutions
    pin_memory: bool  # page-locked host batches, so host-to-device copies can be async
    grad_checkpointing: bool  # recompute block activations in backward
    deterministic: bool  # deterministic kernels only


def decide(config: TrainConfig, device: torch.device) -> FastPath:
    """The switches of a run on `device`: the config's where it says, else the device's default."""
    cuda = device.type == "cuda"
    return FastPath(
        autocast=cuda if config.amp is None else config.amp,
        compile=cuda if config.compile is None else config.compile,
        fused_adamw=cuda and config.optimizer == "adamw",
        tf32=cuda and config.tf32,
        pin_memory=cuda,
        grad_checkpointing=config.grad_checkpointing,
        deterministic=config.deterministic,
    )


def apply_backend(fast: FastPath) -> None:
    """Process-wide settings: TF32 and determinism (call before the first kernel runs)."""
    torch.set_float32_matmul_precision("high" if fast.tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = fast.tf32
    if fast.deterministic:
        # cuBLAS needs a fixed workspace to reduce in a fixed order; read when it starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def compiled(model: nn.Module, fast: FastPath) -> nn.Module:
    """The module to call for training steps: `model` itself or its compiled twin (the two
    share parameters, so checkpoints are written from `model` with plain names)."""
    if not fast.compile:
        return model
    # Whole-batch shapes never change within a run (epochs are whole steps), so one static
    # graph serves every step.
    return torch.compile(model, dynamic=False)  # type: ignore[return-value]
