"""GET /v1/models: what is served, on which providers, batched how."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.auth import API_KEY
from app.api.deps import LoadedClassifierDep
from app.schemas import Batching, ModelCard, ModelList

router = APIRouter(tags=["models"], dependencies=[API_KEY])


@router.get("/v1/models", response_model=ModelList)
async def list_models(classifier: LoadedClassifierDep) -> ModelList:
    """The model served: name, version, labels, input size, providers, batching settings."""
    config, settings = classifier.model.config, classifier.settings
    card = ModelCard(
        name=config.name,
        version=config.version,
        architecture=config.architecture,
        labels=config.labels,
        input_size=config.preprocess.crop,
        grid=config.grid,
        providers=classifier.model.providers,
        intra_op_threads=settings.onnx_threads,
        batching=Batching(
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            request_timeout_s=settings.request_timeout_s,
        ),
    )
    return ModelList(models=[card])
