"""The API's response bodies, as pydantic models (they are the OpenAPI schema too)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: str


class Prediction(BaseModel):
    label: str
    index: int = Field(description="class index in the model's output")
    score: float = Field(description="softmax probability")


CropBox = Annotated[
    tuple[float, float, float, float],
    Field(
        description="x0, y0, x1, y1: the region the model saw, in pixels of the image as sent "
        "(after EXIF rotation); the grid covers exactly this box"
    ),
]


class AttentionGrid(BaseModel):
    grid: tuple[int, int] = Field(description="patch rows, patch columns")
    map: list[list[float]] = Field(description="attention rollout, scaled so its maximum is 1")
    crop: CropBox


class AttentionPng(BaseModel):
    grid: tuple[int, int] = Field(description="patch rows, patch columns")
    png: str = Field(
        description="base64 PNG: the image as sent (after EXIF rotation, long side at most "
        "VITSERVE_ATTENTION_PNG_MAX_SIDE) with the heatmap over the crop and the rest dimmed"
    )
    crop: CropBox


class ImageResult(BaseModel):
    predictions: list[Prediction] = Field(description="sorted by score, descending")
    attention: AttentionGrid | AttentionPng | None = Field(
        None, description="absent with attention=none"
    )


class ClassifyResponse(BaseModel):
    model: ModelRef
    results: list[ImageResult] = Field(description="one per image, in the request's order")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


class Batching(BaseModel):
    max_batch_size: int
    max_wait_ms: float
    max_queue: int
    request_timeout_s: float


class ModelCard(BaseModel):
    name: str
    version: str
    state: str = Field(description="ready, loading (warming up) or unloading (draining)")
    architecture: str
    labels: list[str]
    input_size: tuple[int, int] = Field(description="height, width of the model input")
    grid: tuple[int, int]
    providers: list[str] = Field(description="onnxruntime providers in use, in priority order")
    intra_op_threads: int
    batching: Batching


class VersionState(BaseModel):
    name: str
    version: str
    state: str
    reason: str = Field(description="why it is not loaded: its load error, or unloaded")


class ModelList(BaseModel):
    models: list[ModelCard] = Field(description="every version loaded")
    unavailable: list[VersionState] = Field(description="versions on disk not loaded")
