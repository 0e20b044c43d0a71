"""Our own checkpoint format: a plain dict whose `model_config` alone rebuilds the model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from model.config import ViTConfig
from model.vit import VisionTransformer

FORMAT_TAG = "vitserve"


def save_checkpoint(path: str | Path, model: VisionTransformer, **extra: Any) -> None:
    """Write `model` (and any extra state: optimizer, epoch, ...) atomically: write, then rename,
    so a reader never sees half a file even if the writer is killed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT_TAG,
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        **extra,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_native(state: dict[str, Any]) -> bool:
    """Whether a loaded file is one of ours."""
    return state.get("format") == FORMAT_TAG and "model_config" in state


def model_from_native(state: dict[str, Any]) -> VisionTransformer:
    """Rebuild the model of one of our checkpoints, weights included."""
    model = VisionTransformer(ViTConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model
