"""Every `VITSERVE_*` setting, in one pydantic-settings class (see docs/serving.md)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"

Providers = Literal["auto", "cpu", "cuda", "tensorrt"]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Settings(BaseSettings):
    """The service's configuration, read from `VITSERVE_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="VITSERVE_", extra="ignore")

    # Model and onnxruntime
    model_dir: Path = Field(
        default=DEFAULT_MODEL_DIR, description="directory with model.onnx + config.json"
    )
    providers: Providers = Field(
        default="auto", description="auto: CUDA then CPU; cuda/tensorrt: required"
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="onnxruntime intra-op threads per run; 0: cores / workers"
    )
    inference_workers: int = Field(
        default=1, ge=1, description="session runs (batches) computing at once, one thread each"
    )
    allow_spinning: bool = Field(
        default=False, description="let onnxruntime threads spin between runs"
    )
    warmup_runs: int = Field(
        default=1, ge=1, description="full-batch runs before the service is ready"
    )

    # HTTP server
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # Dynamic batching
    max_batch_size: int = Field(default=32, ge=1, description="images per session run, at most")
    max_wait_ms: float = Field(
        default=5.0, ge=0, description="wait after a batch's first image, at most"
    )
    max_queue: int = Field(default=256, ge=1, description="images admitted and not yet computing")
    request_timeout_s: float = Field(default=30.0, gt=0, description="from acceptance to answer")
    preprocess_threads: int = Field(
        default=0, ge=0, description="threads decoding and preprocessing images; 0: one per core"
    )

    # Limits on input
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="request body, at most"
    )
    max_image_pixels: int = Field(default=64_000_000, ge=1, description="width x height, at most")

    # Devices (app/providers.py, app/bound_session.py)
    device_id: int = Field(default=0, ge=0, description="GPU of the CUDA/TensorRT providers")
    cuda_graphs: bool = Field(
        default=False, description="CUDA: capture one CUDA graph per bucketed batch size"
    )
    trt_fp16: bool = Field(default=True, description="TensorRT: build fp16 engines")
    trt_cache_dir: Path | None = Field(
        default=None, description="TensorRT: engine and timing caches here; none: rebuild"
    )
    batch_buckets: bool = Field(
        default=False,
        description="pad each batch to a power of two (up to max_batch_size); on with CUDA graphs",
    )
    io_binding: bool = Field(
        default=False, description="bind a reused host input buffer and device outputs per run"
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> Settings:
        if self.max_queue < self.max_batch_size:
            raise ValueError(
                f"max_queue ({self.max_queue}) must hold at least one full batch "
                f"(max_batch_size {self.max_batch_size})"
            )
        if self.cuda_graphs and self.inference_workers > 1:
            raise ValueError("cuda_graphs replays one graph at a time: inference_workers must be 1")
        return self

    @property
    def bucketed(self) -> bool:
        """Batches padded to fixed sizes: asked for, or needed by CUDA graphs."""
        return self.batch_buckets or self.cuda_graphs

    @property
    def onnx_threads(self) -> int:
        return self.intra_op_threads or max(1, available_cores() // self.inference_workers)

    @property
    def decode_threads(self) -> int:
        return self.preprocess_threads or available_cores()


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
