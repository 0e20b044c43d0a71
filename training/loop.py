"""The training loop of `pretrain` and `finetune`: straight-line code, the rate from `lr_at`.

Resuming is exact: the data order and each image's augmentation are functions of (seed, epoch,
index), the random stream is reseeded from (seed, step, rank) every step, and `last.pt` holds
the optimizer, the step and the epoch's running sums, saved every `checkpoint_every` steps.

Speed switches (autocast, compile, fused AdamW, TF32, activation checkpointing) come from
`training.fast_path.decide`. Each optimizer step reads its loss back once, after the optimizer
step is queued: one device sync per step, which also makes the data-wait measurement honest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.checkpoint import model_from_native, save_checkpoint
from model.vit import VisionTransformer
from training.augment import TrainTransform, mixup
from training.config import TrainConfig
from training.data.base import SplitData
from training.data.loader import (
    DeviceBatches,
    EpochSampler,
    EvalImages,
    TrainImages,
    default_workers,
    eval_loader,
    train_loader,
)
from training.data.sources import load_source
from training.distributed import World, init_world, reduce_sums, replicas_agree
from training.evaluate import evaluate_model
from training.fast_path import apply_backend, compiled, decide
from training.metrics import soft_cross_entropy, topk_correct
from training.model_init import fresh_model, load_pretrained, variant_config, with_fresh_head
from training.plots import plot_curves
from training.preprocessing import preprocess_config_for
from training.schedule import lr_at
from training.throughput import EpochTiming, TimedBatches

log = logging.getLogger(__name__)

# Options that may differ when a run is resumed: they do not change what is computed.
RESUME_MAY_CHANGE = ("resume", "workers", "progress")


@dataclass(frozen=True)
class BatchPlan:
    """How `batch_size` images per optimizer step divide over ranks and micro-batches."""

    micro_batch: int  # images per forward pass on one rank
    accum_steps: int  # forward passes per optimizer step
    steps_per_epoch: int  # whole optimizer steps; the remainder of an epoch is not used
    warmup_steps: int
    total_steps: int

    @property
    def rank_step_images(self) -> int:
        """Images one rank takes per optimizer step."""
        return self.micro_batch * self.accum_steps


def plan_batches(num_train: int, config: TrainConfig, world: World) -> BatchPlan:
    parts = world.world_size * config.accum_steps
    if config.batch_size % parts:
        raise ValueError(
            f"batch_size {config.batch_size} does not divide into {world.world_size} processes "
            f"x {config.accum_steps} accumulation steps"
        )
    micro = config.batch_size // parts
    per_rank = -(-num_train // world.world_size)  # DistributedSampler pads to equal shares
    steps = per_rank // (micro * config.accum_steps)
    if steps == 0:
        raise ValueError(
            f"{num_train} training images are fewer than one batch of "
            f"{config.batch_size}; lower --batch-size"
        )
    total = steps * config.epochs
    warmup = min(total, round(config.warmup_epochs * steps))
    return BatchPlan(micro, config.accum_steps, steps, warmup, total)


def make_optimizer(
    model: nn.Module, config: TrainConfig, fused: bool = False
) -> torch.optim.Optimizer:
    """No weight decay on biases, norms, class token and position embeddings. `fused`: AdamW's
    update as one kernel over all parameters (CUDA)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        plain = param.ndim < 2 or name in ("cls_token", "pos_embed")
        (no_decay if plain else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999), fused=fused)


def _resumed_config(config: TrainConfig, saved: dict[str, Any]) -> TrainConfig:
    """The interrupted run's config, except the options that may change on resuming."""
    old = TrainConfig.from_dict(saved)
    keep = {k: getattr(config, k) for k in RESUME_MAY_CHANGE}
    changed = [k for k, v in config.to_dict().items() if k not in keep and old.to_dict()[k] != v]
    if changed:
        log.warning("resuming with the run's saved options; ignoring new %s", ", ".join(changed))
    return dataclasses.replace(old, **keep)


def _build(
    config: TrainConfig, resume: dict[str, Any] | None
) -> tuple[VisionTransformer, SplitData]:
    """The model and data of a run: resumed, fine-tuned from --init, or fresh."""
    if resume is not None:
        model = model_from_native(resume)
        return model, load_source(config.data, config, model.config.image_size)
    if config.stage == "finetune":
        if not config.init:
            raise ValueError("finetune needs --init CHECKPOINT")
        model = load_pretrained(config.init, config.model)
        data = load_source(config.data, config, model.config.image_size)
        return with_fresh_head(model, data.labels), data
    data = load_source(config.data, config, variant_config(config.model).image_size)
    torch.manual_seed(config.seed)
    return fresh_model(config.model, data.labels), data


def _read_history(path: Path, epochs_done: int) -> list[dict[str, Any]]:
    """metrics.jsonl lines of the epochs a checkpoint has completed (later ones are redone)."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["epoch"] <= epochs_done]


def train(config: TrainConfig, world: World | None = None) -> Path:
    """Run (or resume) one training run; returns its run directory."""
    world = world or init_world()
    out = Path(config.out)
    last_path = out / "last.pt"
    state: dict[str, Any] | None = None
    if config.resume and last_path.exists():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        config = _resumed_config(config, state["train_config"])
    fast = decide(config, world.device)
    apply_backend(fast)
    model, data = _build(config, state)
    model.set_grad_checkpointing(fast.grad_checkpointing)
    model.to(world.device)
    num_classes = len(data.labels)
    plan = plan_batches(len(data.train), config, world)
    optimizer = make_optimizer(model, config, fused=fast.fused_adamw)
    ddp = None
    if world.distributed:
        ddp = DistributedDataParallel(
            model, device_ids=[world.device.index] if world.device.type == "cuda" else None
        )
    # Compiling the DDP wrapper (not the bare model) lets the compiler split the graph at
    # DDP's gradient buckets, so all-reduce still overlaps backward.
    net = compiled(ddp if ddp is not None else model, fast)
    workers = default_workers(world.local_world_size) if config.workers is None else config.workers
    if world.is_main:
        log.info("fast path on %s: %s; %d loader workers", world.device, fast, workers)

    spec = preprocess_config_for(model.config.image_size)
    aug = data.augmentation
    transform = TrainTransform(
        spec,
        aug.hflip if config.hflip is None else config.hflip,
        aug.crop_scale if config.crop_scale is None else config.crop_scale,
        config.randaugment,
    )
    train_set = TrainImages(data.train, transform)
    val_batches = eval_loader(
        EvalImages(data.val, spec), plan.micro_batch, workers, world.rank, world.world_size
    )

    step, epoch_start, step_in_epoch, best_acc1 = 0, 0, 0, -1.0
    resumed_sums = [0.0, 0.0, 0.0]  # loss sum, top-1 hits, images: all ranks, this epoch
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        step, epoch_start = state["step"], state["epoch"]
        step_in_epoch, best_acc1 = state["step_in_epoch"], state["best_acc1"]
        resumed_sums = state["epoch_sums"]
        log.info("resumed %s at epoch %d, step %d", out, epoch_start + 1, step)
    history = _read_history(out / "metrics.jsonl", epoch_start)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(config.to_toml())
        with open(out / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in history)

    def save(path: Path, epochs_done: int, sums: list[float], metrics: dict[str, Any]) -> None:
        save_checkpoint(
            path,
            model,
            optimizer=optimizer.state_dict(),
            scheduler={
                "name": "warmup_cosine",
                "step": step,
                "warmup_steps": plan.warmup_steps,
                "total_steps": plan.total_steps,
            },
            epoch=epochs_done,
            step=step,
            step_in_epoch=step_in_epoch,
            epoch_sums=sums,
            best_acc1=best_acc1,
            rng={"seed": config.seed, "reseeded": "every step from (seed, step, rank)"},
            train_config=config.to_dict(),
            metrics=metrics,
        )

    for epoch in range(epoch_start, config.epochs):
        sampler = EpochSampler(
            len(data.train),
            plan.steps_per_epoch * plan.rank_step_images,
            epoch,
            config.seed,
            world.rank,
            world.world_size,
            start=step_in_epoch * plan.rank_step_images,
        )
        batches = TimedBatches(
            DeviceBatches(
                train_loader(train_set, sampler, plan.micro_batch, workers, fast.pin_memory),
                world.device,
            )
        )
        sums = resumed_sums if world.is_main else [0.0, 0.0, 0.0]
        resumed_sums = [0.0, 0.0, 0.0]
        net.train()
        bar = tqdm(
            total=plan.steps_per_epoch,
            initial=step_in_epoch,
            leave=False,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (world.is_main and config.progress),
        )
        started, seen = time.perf_counter(), 0
        while step_in_epoch < plan.steps_per_epoch:
            lr = lr_at(step, config.lr, config.min_lr, plan.warmup_steps, plan.total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_seed = hash((config.seed, step, world.rank)) & ((1 << 63) - 1)
            torch.manual_seed(step_seed)  # dropout, drop-path: the same after a resume
            step_sums = torch.zeros(3, dtype=torch.float64, device=world.device)
            for micro in range(config.accum_steps):
                images, targets = next(batches)
                inputs, soft = images, None
                if config.mixup_alpha > 0:
                    inputs, soft = mixup(
                        images, targets, num_classes, config.mixup_alpha, step_seed + micro
                    )
                # Under DDP, gradients are all-reduced once per optimizer step: on the last
                # micro-batch; the others only accumulate locally.
                accumulating = ddp is not None and micro < config.accum_steps - 1
                with ddp.no_sync() if accumulating else contextlib.nullcontext():  # type: ignore[union-attr]
                    with torch.autocast(world.device.type, torch.bfloat16, enabled=fast.autocast):
                        logits = net(inputs).float()
                        if soft is not None:
                            loss = soft_cross_entropy(logits, soft)
                        else:
                            loss = F.cross_entropy(
                                logits, targets, label_smoothing=config.label_smoothing
                            )
                    (loss / config.accum_steps).backward()
                step_sums[0] += loss.detach().double() * len(targets)
                step_sums[1] += topk_correct(logits.detach(), targets, 1)
                step_sums[2] += len(targets)
                seen += len(targets)
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for i, value in enumerate(step_sums.tolist()):  # the step's one device sync
                sums[i] += value
            step += 1
            step_in_epoch += 1
            rate = seen * world.world_size / (time.perf_counter() - started)
            bar.update()
            bar.set_postfix(
                loss=f"{sums[0] / sums[2]:.3f}",
                acc=f"{sums[1] / sums[2]:.3f}",
                lr=f"{lr:.2e}",
                img_s=f"{rate:.0f}",
            )
            mid_epoch = step_in_epoch < plan.steps_per_epoch
            if config.checkpoint_every and step % config.checkpoint_every == 0 and mid_epoch:
                total = reduce_sums(sums, world)  # every rank joins; rank 0 writes
                if world.is_main:
                    save(last_path, epoch, total, {})
                    log.info("saved %s at epoch %d, step %d", last_path, epoch + 1, step)
        bar.close()
        elapsed = time.perf_counter() - started
        train_loss, train_hits, train_count, waited = reduce_sums([*sums, batches.waited], world)
        timing = EpochTiming(elapsed, waited / world.world_size, seen * world.world_size)
        # Eager model, no DDP: evaluation needs no gradients, and no second compiled graph.
        val = evaluate_model(model, val_batches, num_classes, world, fast.autocast)
        line = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": train_loss / train_count,
            "train_acc1": train_hits / train_count,
            "val_loss": val.loss,
            "val_acc1": val.acc1,
            "val_acc5": val.acc5,
            "lr": lr,
            **timing.fields(),
            "world_size": world.world_size,
        }
        history.append(line)
        step_in_epoch = 0
        if world.is_main:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
            metrics = {"top1": val.acc1, "top5": val.acc5, "dataset": config.data}
            if val.acc1 > best_acc1:
                best_acc1 = val.acc1
                save(out / "best.pt", epoch + 1, [0.0, 0.0, 0.0], metrics)
            save(last_path, epoch + 1, [0.0, 0.0, 0.0], metrics)
            plot_curves(history, out / "curves.png")
            log.info(
                "epoch %d/%d: train loss %.4f acc %.4f | val loss %.4f acc1 %.4f acc5 %.4f | %s",
                epoch + 1,
                config.epochs,
                line["train_loss"],
                line["train_acc1"],
                val.loss,
                val.acc1,
                val.acc5,
                timing.line(),
            )
    agree = replicas_agree(model, world)
    if world.distributed:
        log.info("rank %d/%d finished; replicas agree: %s", world.rank, world.world_size, agree)
    return out
