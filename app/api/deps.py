"""What handlers get injected: the settings, the metrics, the request-bytes budget, the
classifier once it is ready."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.buffers import BufferBudget
from app.errors import NotReady
from app.inference import Classifier
from app.metrics import Metrics
from app.settings import Settings


def settings(request: Request) -> Settings:
    return request.app.state.settings


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def buffers(request: Request) -> BufferBudget:
    return request.app.state.buffers


def loaded_classifier(request: Request) -> Classifier:
    """The classifier, ready or not (for metadata)."""
    classifier: Classifier | None = request.app.state.classifier
    if classifier is None:
        raise NotReady("the model is not loaded")
    return classifier


def ready_classifier(classifier: Annotated[Classifier, Depends(loaded_classifier)]) -> Classifier:
    """The classifier, or 503 not_ready until it has warmed up."""
    if not classifier.ready:
        raise NotReady()
    return classifier


SettingsDep = Annotated[Settings, Depends(settings)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
BuffersDep = Annotated[BufferBudget, Depends(buffers)]
LoadedClassifierDep = Annotated[Classifier, Depends(loaded_classifier)]
ClassifierDep = Annotated[Classifier, Depends(ready_classifier)]
