"""What handlers get injected: the settings, the metrics, the request-bytes budget, the model
repository."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.buffers import BufferBudget
from app.errors import NotReady
from app.metrics import Metrics
from app.repository import ModelRepository
from app.settings import Settings


def settings(request: Request) -> Settings:
    return request.app.state.settings


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def buffers(request: Request) -> BufferBudget:
    return request.app.state.buffers


def repository(request: Request) -> ModelRepository:
    """The repository once it is open (503 not_ready before)."""
    repository: ModelRepository | None = request.app.state.repository
    if repository is None:
        raise NotReady("the models are not loaded")
    return repository


SettingsDep = Annotated[Settings, Depends(settings)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
BuffersDep = Annotated[BufferBudget, Depends(buffers)]
RepositoryDep = Annotated[ModelRepository, Depends(repository)]
