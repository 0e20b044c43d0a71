"""Every `VITSERVE_*` setting, in one pydantic-settings class (see docs/serving.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.api_keys import read_api_keys
from app.cores import available_cores

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"

Providers = Literal["auto", "cpu", "cuda", "tensorrt"]


class Settings(BaseSettings):
    """The service's configuration, read from `VITSERVE_*` environment variables."""

    # hide_input_in_errors: a validation error must not print VITSERVE_API_KEYS.
    model_config = SettingsConfigDict(
        env_prefix="VITSERVE_", extra="ignore", hide_input_in_errors=True
    )

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

    # Models, process and access (issue 8's hardening)
    run_timeout_s: float = Field(
        default=60.0,
        ge=0,
        description="a session run (not warm-up) longer than this fails the process; 0: off",
    )
    api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="comma-separated keys, or a file of keys (a path starting with / or ./); "
        "empty: no keys required",
    )
    metrics_require_key: bool = Field(
        default=True, description="with API keys set, /metrics requires one too"
    )
    _api_keys: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("providers", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _wait_within_the_request_timeout(self) -> Settings:
        if self.max_wait_ms / 1000 >= self.request_timeout_s:
            raise ValueError(
                f"max_wait_ms ({self.max_wait_ms:g} ms) must be shorter than request_timeout_s "
                f"({self.request_timeout_s:g} s): every image would time out waiting for a batch"
            )
        return self

    @model_validator(mode="after")
    def _read_api_keys(self) -> Settings:
        self._api_keys = read_api_keys(self.api_keys.get_secret_value())
        return self

    @property
    def api_key_set(self) -> frozenset[str]:
        """The accepted API keys; empty when none are required."""
        return self._api_keys

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> Settings:
        if self.max_queue < self.max_batch_size:
            raise ValueError(
                f"max_queue ({self.max_queue}) must hold at least one full batch "
                f"(max_batch_size {self.max_batch_size})"
            )
        return self

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
