"""The step every format shares: fit a converted state dict to the model and load it.

Position embeddings are resampled to the model's grid, a head for another number of classes is
replaced by a fresh zero one, and every other key and shape must match exactly.
"""

from __future__ import annotations

import math

from torch import Tensor

from model.pos_embed import resample_pos_embed
from model.vit import VisionTransformer

_MAX_REPORTED = 8  # problems listed in one error; a wrong architecture gives hundreds


def load_fitted(
    model: VisionTransformer,
    state: dict[str, Tensor],
    fresh_head: bool,
    where: str = "checkpoint",
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> None:
    """Load `state` (our names) into `model`, or raise a ValueError naming each key that does not
    fit with both shapes. `fresh_head`: drop the file's head and zero-initialise the model's."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if fresh_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        expected = {k: v for k, v in expected.items() if not k.startswith("head.")}
    state = _resample_positions(state, model, expected, where, interpolation, antialias)
    problems = []
    for key, shape in expected.items():
        if key not in state:
            problems.append(f"missing {key!r} (model shape {shape})")
        elif tuple(state[key].shape) != shape:
            problems.append(
                f"{key!r} has shape {tuple(state[key].shape)} in the checkpoint "
                f"but {shape} in the model"
            )
    problems += [
        f"unexpected {key!r} (checkpoint shape {tuple(state[key].shape)}, not in the model)"
        for key in state
        if key not in expected
    ]
    if problems:
        more = len(problems) - _MAX_REPORTED
        listed = "; ".join(problems[:_MAX_REPORTED]) + (f"; and {more} more" if more > 0 else "")
        raise ValueError(f"{where} does not fit {model.config.name}: {listed}")
    model.load_state_dict(state, strict=not fresh_head)
    if fresh_head:
        model.reset_head()


def _resample_positions(
    state: dict[str, Tensor],
    model: VisionTransformer,
    expected: dict[str, tuple[int, ...]],
    where: str,
    interpolation: str,
    antialias: bool,
) -> dict[str, Tensor]:
    pos = state.get("pos_embed")
    want = expected["pos_embed"]
    if pos is None or tuple(pos.shape) == want or pos.ndim != 3 or pos.shape[-1] != want[-1]:
        return state  # nothing to do, or a mismatch the shape check reports
    side = math.isqrt(pos.shape[1] - 1)
    if side * side != pos.shape[1] - 1:
        raise ValueError(
            f"{where}: 'pos_embed' has shape {tuple(pos.shape)} in the checkpoint but {want} in "
            "the model, and its patch tokens are no square grid to resample"
        )
    resampled = resample_pos_embed(
        pos, model.config.grid_size, interpolation=interpolation, antialias=antialias
    )
    return {**state, "pos_embed": resampled}
