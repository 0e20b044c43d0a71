"""How far a converted graph (fp16, int8) strays from its float32 original, on a fixed image set:
the share of images with the same top-1 class, the largest logit and attention differences, and
each graph's top-1 accuracy when the images are labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.model_config import INPUT_NAME, OUTPUT_NAMES
from training.onnx_export import ExportCheckError, ort_session


@dataclass(frozen=True)
class AgreementReport:
    """A candidate graph against its float32 reference on the same images."""

    num_images: int
    top1_agreement: float  # fraction of images with the same arg-max class
    max_abs_logit_diff: float
    max_abs_attention_diff: float
    provider: str  # where the candidate ran
    reference_top1: float | None = None  # accuracy on labelled images
    candidate_top1: float | None = None

    @property
    def top1_loss_points(self) -> float | None:
        """Accuracy lost, in percentage points (negative: the candidate did better)."""
        if self.reference_top1 is None or self.candidate_top1 is None:
            return None
        return 100 * (self.reference_top1 - self.candidate_top1)

    def describe(self) -> str:
        text = (
            f"top-1 agreement {100 * self.top1_agreement:.2f}% on {self.num_images} images "
            f"({self.provider}), max |logit diff| {self.max_abs_logit_diff:.3g}, "
            f"max |attention diff| {self.max_abs_attention_diff:.3g}"
        )
        if self.reference_top1 is not None and self.candidate_top1 is not None:
            text += (
                f"; top-1 accuracy {100 * self.reference_top1:.2f}% -> "
                f"{100 * self.candidate_top1:.2f}%"
            )
        return text


def _outputs(
    path: Path, images: np.ndarray, providers: list[str], batch_size: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Logits and attention of the graph at `path` on `images`, and the provider it ran on."""
    session = ort_session(path, providers)
    logits, attention = [], []
    for start in range(0, len(images), batch_size):
        batch_logits, batch_attention = session.run(
            list(OUTPUT_NAMES), {INPUT_NAME: images[start : start + batch_size]}
        )
        logits.append(batch_logits)
        attention.append(batch_attention)
    return np.concatenate(logits), np.concatenate(attention), session.get_providers()[0]


def compare_graphs(
    reference: str | Path,
    candidate: str | Path,
    images: np.ndarray,
    targets: np.ndarray | None = None,
    providers: list[str] | None = None,
    batch_size: int = 32,
) -> AgreementReport:
    """Run both graphs on `images` (preprocessed, (N, 3, H, W) float32) and compare. Raises
    `ExportCheckError` if the candidate gives non-finite outputs."""
    providers = providers or ["CPUExecutionProvider"]
    ref_logits, ref_attention, _ = _outputs(Path(reference), images, providers, batch_size)
    logits, attention, provider = _outputs(Path(candidate), images, providers, batch_size)
    if not (np.isfinite(logits).all() and np.isfinite(attention).all()):
        raise ExportCheckError(f"{candidate} gives non-finite outputs")
    ref_top1, top1 = ref_logits.argmax(-1), logits.argmax(-1)
    return AgreementReport(
        num_images=len(images),
        top1_agreement=float(np.mean(ref_top1 == top1)),
        max_abs_logit_diff=float(np.max(np.abs(ref_logits - logits))),
        max_abs_attention_diff=float(np.max(np.abs(ref_attention - attention))),
        provider=provider,
        reference_top1=None if targets is None else float(np.mean(ref_top1 == targets)),
        candidate_top1=None if targets is None else float(np.mean(top1 == targets)),
    )
