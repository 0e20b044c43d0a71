"""Which format a checkpoint is in, told from its telltale keys, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from torch import Tensor

from model.checkpoint import is_native

Format = Literal["native", "timm", "huggingface", "npz"]

# Training scripts wrap the state dict; torch.compile and DistributedDataParallel prefix its keys.
_WRAPPERS = ("model", "state_dict")
_PREFIXES = ("_orig_mod.", "module.")


def unwrap(content: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a state dict, out of `model`/`state_dict` wrappers and key prefixes."""
    for wrapper in _WRAPPERS:
        inner = content.get(wrapper)
        if isinstance(inner, Mapping):
            content = inner
    tensors: dict[str, Tensor] = {}
    for key, value in content.items():
        if not isinstance(value, Tensor):
            continue
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        tensors[key] = value
    return tensors


def detect_format(
    content: Mapping[str, Any], where: str = "checkpoint"
) -> tuple[Format, dict[str, Tensor]]:
    """(format, tensors by the file's own names); raises ValueError for anything but a ViT."""
    if is_native(dict(content)):
        return "native", unwrap(content["model"])
    tensors = unwrap(content)
    if "embedding/kernel" in tensors or "opt/target/embedding/kernel" in tensors:
        return "npz", tensors
    if any(key.endswith("embeddings.patch_embeddings.projection.weight") for key in tensors):
        return "huggingface", tensors
    if "patch_embed.proj.weight" in tensors:
        return "timm", tensors
    sample = ", ".join(repr(k) for k in list(tensors or content)[:5])
    raise ValueError(
        f"{where} is not a ViT checkpoint: no patch embedding under any known name "
        f"('patch_embed.proj.weight', 'embeddings.patch_embeddings.projection.weight', "
        f"'embedding/kernel'); its first keys are {sample or 'none'}"
    )
