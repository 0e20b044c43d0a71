"""Every `VITSERVE_*` setting, in one pydantic-settings class (see docs/serving.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.api_keys import read_api_keys
from app.cores import available_cores

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"

Providers = Literal["auto", "cpu", "cuda", "tensorrt"]

# Image formats: the default allowlist, and every format the service can be told to accept.
# TIFF is accepted only on request, and then its tile and strip sizes are checked too
# (app/images.py). PostScript and the like are never decoded: Pillow would run Ghostscript.
DEFAULT_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
SUPPORTED_IMAGE_FORMATS = (*DEFAULT_IMAGE_FORMATS, "TIFF")
# The largest pixel limit accepted: what a C int counts, as Pillow sizes images with C ints.
# Beyond it the limit would not be the decoder's; JPEG itself stops at 65500 x 65500.
MAX_DECODABLE_PIXELS = 2**31 - 1


class Settings(BaseSettings):
    """The service's configuration, read from `VITSERVE_*` environment variables."""

    # hide_input_in_errors: a validation error must not print VITSERVE_API_KEYS.
    model_config = SettingsConfigDict(
        env_prefix="VITSERVE_", extra="ignore", hide_input_in_errors=True
    )

    # Model and onnxruntime
    model_dir: Path = Field(
        default=DEFAULT_MODEL_DIR,
        description="one model: a directory with model.onnx + config.json",
    )
    model_repository: Path | None = Field(
        default=None,
        description="many models: DIR/<name>/<version>/{model.onnx,config.json}; wins over "
        "model_dir",
    )
    version_policy: str = Field(
        default="latest:1",
        pattern=r"^(all|latest:[1-9][0-9]*)$",
        description="versions served per model, counted over those that loaded: latest:N or all",
    )
    repository_poll_s: float = Field(
        default=0.0,
        ge=0,
        description="poll the repository every N s for new/removed versions; 0: explicit mode",
    )
    default_model: str | None = Field(
        default=None, description="the model POST /classify uses; needed with several models"
    )
    providers: Providers = Field(
        default="auto", description="auto: CUDA then CPU; cuda/tensorrt: required"
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="onnxruntime intra-op threads of all models' sessions together (each model "
        "gets an equal share, at least 1); 0: cores / workers",
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
    grpc_port: int = Field(
        default=8001, ge=0, le=65535, description="Open Inference Protocol over gRPC; 0: off"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # Dynamic batching
    max_batch_size: int = Field(default=32, ge=1, description="images per session run, at most")
    max_wait_ms: float = Field(
        default=5.0, ge=0, description="wait after a batch's first image, at most"
    )
    max_queue: int = Field(default=256, ge=1, description="images admitted and not yet computing")
    request_timeout_s: float = Field(default=30.0, gt=0, description="from acceptance to answer")
    stop_delay_s: float = Field(
        default=0.0,
        ge=0,
        le=120,
        description="after SIGTERM, fail /readyz but go on serving this long before closing",
    )
    preprocess_threads: int = Field(
        default=0, ge=0, description="threads decoding and preprocessing images; 0: one per core"
    )

    # Limits on input
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="request body, at most"
    )
    max_image_pixels: int = Field(
        default=64_000_000,
        ge=1,
        le=MAX_DECODABLE_PIXELS,
        description="width x height of one image, at most, weighted by its bytes per pixel",
    )

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

    # Hostile input and slow clients (docs/serving.md, "Limits and hardening")
    image_formats: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_IMAGE_FORMATS, description="Pillow format names accepted, comma-separated"
    )
    max_parts: int = Field(
        default=256, ge=1, description="multipart parts of any name per request, at most"
    )
    max_part_header_bytes: int = Field(
        default=64 * 1024, ge=1, description="bytes of all multipart part headers, at most"
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="bytes of a request's line and headers, at most"
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="from a request's first byte (or the connection) to its "
        "last header line, at most",
    )
    body_timeout_s: float = Field(
        default=0.0,
        ge=0,
        description="from the headers to the body's last byte, at most; 0: 10 s plus the upload "
        "limit at 1 MiB/s",
    )
    max_connections: int = Field(default=1024, ge=1, description="open connections, at most")
    max_buffered_bytes: int = Field(
        default=0,
        ge=0,
        description="request bytes held at once across all requests; 0: 4 x the upload limit",
    )

    # What people see
    demo: bool = Field(default=True, description="serve the demo page at / and /demo")
    attention_png_max_side: int = Field(
        default=512, ge=16, le=4096, description="attention=png: the heatmap's long side, at most"
    )

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

    @field_validator("image_formats", mode="before")
    @classmethod
    def _split_formats(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(str(name).strip().upper() for name in value if str(name).strip())
        return value

    @field_validator("image_formats")
    @classmethod
    def _known_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in SUPPORTED_IMAGE_FORMATS]
        if unknown or not value:
            raise ValueError(
                f"image_formats: {', '.join(unknown) or '(none)'} not among "
                f"{', '.join(SUPPORTED_IMAGE_FORMATS)}"
            )
        return value

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
        if self.cuda_graphs and self.inference_workers > 1:
            raise ValueError("cuda_graphs replays one graph at a time: inference_workers must be 1")
        return self

    @model_validator(mode="after")
    def _buffer_holds_an_upload(self) -> Settings:
        if self.buffered_bytes_limit < self.max_upload_bytes:
            raise ValueError(
                f"max_buffered_bytes ({self.max_buffered_bytes}) must hold at least one upload "
                f"(max_upload_bytes {self.max_upload_bytes})"
            )
        return self

    @property
    def body_read_timeout_s(self) -> float:
        """The body timeout in force: set, or scaled to the upload limit (a 1 MiB/s client)."""
        return self.body_timeout_s or 10.0 + self.max_upload_bytes / 2**20

    @property
    def buffered_bytes_limit(self) -> int:
        return self.max_buffered_bytes or 4 * self.max_upload_bytes

    @property
    def served_versions(self) -> int | None:
        """How many versions of each model the policy serves (None: all)."""
        return None if self.version_policy == "all" else int(self.version_policy.split(":")[1])

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
