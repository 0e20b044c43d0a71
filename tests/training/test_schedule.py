from __future__ import annotations

import pytest

from training.schedule import lr_at


def test_warmup_then_cosine() -> None:
    rates = [lr_at(s, peak=1.0, min_lr=0.1, warmup_steps=4, total_steps=14) for s in range(16)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert rates[4] == pytest.approx(1.0)
    assert rates[9] == pytest.approx(0.55)  # half-way down the cosine
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))
    assert rates[14] == rates[15] == 0.1
    assert lr_at(0, 1.0, 0.0, warmup_steps=0, total_steps=10) == 1.0
