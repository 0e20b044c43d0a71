"""The loop's parts and one short run through `train()`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.checkpoint import is_native, model_from_native, save_checkpoint
from model.config import config_from_name
from model.vit import VisionTransformer
from training.config import ModelSpec, TrainConfig, resolve
from training.distributed import World
from training.loop import make_optimizer, plan_batches, train
from training.model_init import load_pretrained, with_fresh_head

SMALL = {"arch": "vit_tiny_patch4_32", "depth": 1, "embed_dim": 48}


def test_one_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(config_from_name("vit_tiny_patch4_32", depth=1, num_classes=10))
    torch.nn.init.normal_(model.head.weight, std=0.02)
    optimizer = make_optimizer(model, TrainConfig(lr=1e-3))
    images, targets = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    before = F.cross_entropy(model(images), targets)
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = F.cross_entropy(model(images), targets)
    assert after < before


def test_no_weight_decay_on_norms_and_embeddings() -> None:
    model = VisionTransformer(config_from_name("vit_tiny_patch4_32", depth=1, num_classes=10))
    decay, plain = make_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    assert plain["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1
    assert any(p is model.pos_embed for p in plain["params"])
    assert any(p is model.head.weight for p in decay["params"])


def test_batch_plan() -> None:
    config = TrainConfig(batch_size=32, accum_steps=2, epochs=3, warmup_epochs=0.5)
    plan = plan_batches(1000, config, World(rank=1, world_size=2))
    assert (plan.micro_batch, plan.steps_per_epoch) == (8, 31)  # 500 images per rank
    assert (plan.warmup_steps, plan.total_steps) == (16, 93)
    with pytest.raises(ValueError, match="does not divide"):
        plan_batches(1000, TrainConfig(batch_size=30, accum_steps=4), World())
    with pytest.raises(ValueError, match="fewer than one batch"):
        plan_batches(10, TrainConfig(batch_size=32), World())


def test_finetune_init_resamples_and_zeroes_the_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base = VisionTransformer(config_from_name("vit_tiny_patch4_32", depth=1, num_classes=5))
    torch.nn.init.normal_(base.head.weight)
    save_checkpoint(tmp_path / "base.pt", base)
    loaded = load_pretrained(tmp_path / "base.pt", ModelSpec(image_size=48, drop_path_rate=0.1))
    model = with_fresh_head(loaded, ["a", "b", "c"])
    assert model.config.image_size == 48 and model.pos_embed.shape == (1, 1 + 12 * 12, 192)
    assert model.config.drop_path_rate == 0.1 and model.config.labels == ["a", "b", "c"]
    assert torch.count_nonzero(model.head.weight) == 0 and model.head.weight.shape[0] == 3
    assert torch.equal(model.blocks[0].attn.qkv.weight, base.blocks[0].attn.qkv.weight)
    assert torch.equal(model.pos_embed[:, 0], base.pos_embed[:, 0])  # class slot kept
    same_classes = with_fresh_head(load_pretrained(tmp_path / "base.pt"), list("abcde"))
    assert torch.count_nonzero(same_classes.head.weight) == 0


def test_worker_processes_change_nothing(tmp_path: Path) -> None:
    """Augmentation is seeded per image, so loading in worker processes gives the same run."""
    results = []
    for workers in (0, 2):
        out = tmp_path / f"workers{workers}"
        options = {
            "data": "digits",
            "model": SMALL,
            "epochs": 1,
            "batch_size": 256,
            "out": str(out),
            "progress": False,
            "workers": workers,
        }
        train(resolve("pretrain", cli=options))
        results.append(json.loads((out / "metrics.jsonl").read_text()))
    for key in ("train_loss", "train_acc1", "val_loss", "val_acc1"):
        assert results[0][key] == results[1][key], key


def test_a_short_run_writes_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = resolve(
        "pretrain",
        cli={
            "data": "digits",
            "model": SMALL,
            "epochs": 2,
            "batch_size": 128,
            "accum_steps": 2,
            "out": str(out),
            "progress": False,
            "checkpoint_every": 0,
        },
    )
    train(config)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    keys = {
        "epoch",
        "train_loss",
        "train_acc1",
        "val_loss",
        "val_acc1",
        "val_acc5",
        "lr",
        "images_per_s",
        "data_wait_s",
        "compute_s",
        "data_bound_share",
    }
    assert keys <= lines[0].keys()
    for line in lines:
        assert line["data_wait_s"] + line["compute_s"] == pytest.approx(line["seconds"])
    assert all(0.0 <= line[k] <= 1.0 for line in lines for k in ("train_acc1", "val_acc1"))
    assert lines[1]["val_loss"] < lines[0]["val_loss"]
    assert (out / "curves.png").stat().st_size > 0
    assert (
        TrainConfig.from_dict(__import__("tomllib").loads((out / "config.toml").read_text()))
        == config
    )
    state = torch.load(out / "best.pt", weights_only=False)
    assert is_native(state) and state["train_config"] == config.to_dict()
    model = model_from_native(state)
    assert model.config.labels == [str(d) for d in range(10)]
    assert state["metrics"]["top1"] == max(line["val_acc1"] for line in lines)
