"""Reading a checkpoint from disk: one weights file, or a `save_pretrained`-style directory."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

# What `save_pretrained` (transformers) and `push_to_hub` (timm) leave in a directory.
_DIRECTORY_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_DIRECTORY_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass
class RawCheckpoint:
    """A file's content as stored, before its format is known."""

    path: Path
    content: dict[str, Any]  # tensors by name, possibly wrapped, or one of our checkpoints
    config_json: dict[str, Any] | None  # the config.json beside the weights, if any


def read_checkpoint(source: str | Path) -> RawCheckpoint:
    """Read a weights file (.safetensors, .npz, or a torch pickle: .pth/.pt/.bin/...) or a
    directory holding config.json and model.safetensors / pytorch_model.bin (sharded or not)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return RawCheckpoint(path, _read_directory(path), _read_json(path / "config.json"))
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return RawCheckpoint(path, read_weights(path), _read_json(path.parent / "config.json"))


def read_weights(path: Path) -> dict[str, Any]:
    """One weights file, by its suffix; torch pickles with `weights_only`, so no code runs."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return dict(load_file(path))
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            return {name: torch.from_numpy(np.array(arrays[name])) for name in arrays.files}
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path} is not a checkpoint that can be read safely: {error}") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a dict of tensors")
    return content


def _read_directory(path: Path) -> dict[str, Any]:
    for name in _DIRECTORY_WEIGHTS:
        if (path / name).is_file():
            return read_weights(path / name)
    for name in _DIRECTORY_INDEXES:
        index = _read_json(path / name)
        if index is not None:
            state: dict[str, Any] = {}
            for shard in sorted(set(index["weight_map"].values())):
                state.update(read_weights(path / shard))
            return state
    raise FileNotFoundError(
        f"{path} holds none of {', '.join(_DIRECTORY_WEIGHTS + _DIRECTORY_INDEXES)}"
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with path.open() as f:
        value = json.load(f)
    return value if isinstance(value, dict) else None
