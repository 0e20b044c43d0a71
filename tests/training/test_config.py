"""One typed config: defaults < stage defaults < preset < TOML file < command line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from training.config import TrainConfig, resolve


def test_precedence(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text("epochs = 7\nlr = 0.2\n[model]\ndepth = 3\n")
    config = resolve(
        "finetune",
        preset={"epochs": 4, "batch_size": 16, "model": {"depth": 2, "embed_dim": 96}},
        file=file,
        cli={"lr": 0.5},
    )
    assert config.optimizer == "sgd"  # finetune's stage default
    assert config.batch_size == 16  # preset
    assert config.epochs == 7  # file over preset
    assert config.lr == 0.5  # command line over file
    assert config.model.depth == 3 and config.model.embed_dim == 96
    assert resolve("pretrain").optimizer == "adamw"


def test_toml_round_trip(tmp_path: Path) -> None:
    config = resolve("pretrain", cli={"data": "mnist", "hflip": False, "model": {"depth": 4}})
    file = tmp_path / "config.toml"
    file.write_text(config.to_toml())
    assert tomllib.loads(file.read_text())["model"]["depth"] == 4
    assert resolve("pretrain", file=file) == config
    assert resolve("finetune", file=file).stage == "finetune"


def test_bad_options_name_the_key() -> None:
    with pytest.raises(ValueError, match="unknown TrainConfig option 'epoch'"):
        resolve("pretrain", cli={"epoch": 3})
    with pytest.raises(ValueError, match="option 'optimizer'"):
        resolve("pretrain", cli={"optimizer": "lamb"})
    with pytest.raises(ValueError, match="unknown ModelSpec option 'layers'"):
        TrainConfig.from_dict({"model": {"layers": 3}})
    assert resolve("pretrain", cli={"lr": 1}).lr == 1.0  # ints widen to floats
