"""GET /v1/models: every model version loaded, its state, providers and batching; and the
versions on disk that are not loaded, with the reason."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.auth import API_KEY
from app.api.deps import RepositoryDep
from app.runtime import ModelRuntime
from app.schemas import Batching, ModelCard, ModelList, VersionState

router = APIRouter(tags=["models"], dependencies=[API_KEY])


def model_card(runtime: ModelRuntime, state: str) -> ModelCard:
    config, limits = runtime.config, runtime.limits
    return ModelCard(
        name=runtime.name,
        version=runtime.version,
        state=state,
        architecture=config.architecture,
        labels=config.labels,
        input_size=config.preprocess.crop,
        grid=config.grid,
        providers=runtime.model.providers,
        intra_op_threads=runtime.model.intra_op_threads,
        batching=Batching(
            max_batch_size=limits.max_batch_size,
            max_wait_ms=limits.max_wait_ms,
            max_queue=limits.max_queue,
            request_timeout_s=runtime.settings.request_timeout_s,
        ),
    )


@router.get("/v1/models", response_model=ModelList)
async def list_models(repository: RepositoryDep) -> ModelList:
    """Every model version: name, version, state, labels, input size, providers, batching."""
    cards: list[ModelCard] = []
    unavailable: list[VersionState] = []
    loaded = {(r.name, r.version): r for rs in repository.loaded().values() for r in rs}
    for row in repository.index():
        runtime = loaded.get((row.name, row.version))
        if runtime is not None:
            cards.append(model_card(runtime, row.state.lower()))
        else:
            unavailable.append(
                VersionState(
                    name=row.name, version=row.version, state="unavailable", reason=row.reason
                )
            )
    return ModelList(models=cards, unavailable=unavailable)
