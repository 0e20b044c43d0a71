"""Which onnxruntime execution providers to ask for, with which options, and which one the
session must run on.

onnxruntime-gpu lists CUDA as available on every machine, GPU or not, and asking for it where
there is no GPU prints a red "failed to load libonnxruntime_providers_cuda" error before
falling back to the CPU. So `auto` asks for CUDA only where this process can see an NVIDIA GPU;
`cuda` and `tensorrt` always ask, and the service refuses to start when they are not used.

Each provider's options are pure functions of the settings and the model's own config (unit-tested
on any host):

- CUDA: the device, an arena that grows by what is asked (a ViT's batches vary in size; the
  default doubling strands memory), copies on the compute stream, optional CUDA graphs;
- TensorRT: one optimisation profile from batch 1 to the model's max batch at its resolution,
  so no batch size triggers an engine rebuild mid-traffic; fp16; engine and timing caches on
  disk, so a second start loads engines instead of building them.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import os
from pathlib import Path

from app.model_config import INPUT_NAME
from app.settings import Providers, Settings

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

# What each setting asks onnxruntime for, and the provider the session must then run on.
_REQUESTS: dict[Providers, tuple[list[str], str | None]] = {
    "auto": ([CUDA, CPU], None),
    "cpu": ([CPU], CPU),
    "cuda": ([CUDA, CPU], CUDA),
    "tensorrt": ([TENSORRT, CUDA, CPU], TENSORRT),
}

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU the driver manages
DEV = Path("/dev")


class ProviderError(RuntimeError):
    """The providers asked for by name are not what the session runs on."""


def gpu_visible(dev: Path = DEV, driver_gpus: Path = NVIDIA_GPUS) -> bool:
    """Whether this process can see an NVIDIA GPU: a `/dev/nvidiaN` device node (what the
    NVIDIA container runtime passes in), a GPU the driver lists, or WSL2's GPU device
    `/dev/dxg`; and CUDA_VISIBLE_DEVICES does not hide them all."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    nodes = [path for path in dev.glob("nvidia*") if path.name.removeprefix("nvidia").isdigit()]
    listed = driver_gpus.is_dir() and any(driver_gpus.iterdir())
    return bool(nodes) or listed or (dev / "dxg").exists()


def requested_providers(
    setting: Providers, available: list[str], gpu: bool = True
) -> tuple[list[str], str | None]:
    """The providers to ask onnxruntime for, and the one the session is required to run on.
    `gpu`: whether a GPU is visible; without one `auto` asks for the CPU alone."""
    wanted, required = _REQUESTS[setting]
    if required is not None and required not in available:
        raise ProviderError(
            f"VITSERVE_PROVIDERS={setting} asks for {required}, but this onnxruntime only offers "
            f"{', '.join(available)}"
        )
    if setting == "auto" and not gpu:
        wanted = [CPU]
    return [p for p in wanted if p in available], required


ProviderOptions = dict[str, str]

# The shared libraries onnxruntime-gpu's TensorRT provider links against (TensorRT 10).
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10")


def cuda_options(settings: Settings) -> ProviderOptions:
    """The CUDA provider's options (onnxruntime reads them as strings)."""
    return {
        "device_id": str(settings.device_id),
        # Grow the arena by what a run asks for, not by doubling: batches of 1..max sizes
        # would otherwise leave most of a doubled block unused.
        "arena_extend_strategy": "kSameAsRequested",
        # Copies on the compute stream: onnxruntime's recommended setting (a separate copy
        # stream can race with compute).
        "do_copy_in_default_stream": "1",
        # cuDNN's exhaustive search runs once per input shape: with bucketed batch sizes that
        # is once per bucket, during warm-up.
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "enable_cuda_graph": "1" if settings.cuda_graphs else "0",
    }


def profile_shapes(height: int, width: int, batch: int) -> str:
    """TensorRT's shape string for our one input at `batch` images."""
    return f"{INPUT_NAME}:{batch}x3x{height}x{width}"


def tensorrt_options(
    settings: Settings, image_size: tuple[int, int], max_batch_size: int
) -> ProviderOptions:
    """The TensorRT provider's options for a model of `image_size` (height, width) served in
    batches of 1..`max_batch_size`: one profile covering them all, optimised for the largest."""
    height, width = image_size
    options = {
        "device_id": str(settings.device_id),
        "trt_fp16_enable": "1" if settings.trt_fp16 else "0",
        "trt_profile_min_shapes": profile_shapes(height, width, 1),
        "trt_profile_opt_shapes": profile_shapes(height, width, max_batch_size),
        "trt_profile_max_shapes": profile_shapes(height, width, max_batch_size),
        "trt_detailed_build_log": "1",  # the engine build's progress, in onnxruntime's log
    }
    if settings.trt_cache_dir is not None:
        cache = str(settings.trt_cache_dir)
        options |= {
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": cache,
        }
    return options


def provider_options(
    providers: list[str], settings: Settings, image_size: tuple[int, int], max_batch_size: int
) -> list[tuple[str, ProviderOptions]]:
    """Each provider of `providers` with its options, in order (the CPU provider takes none)."""
    built: list[tuple[str, ProviderOptions]] = []
    for provider in providers:
        if provider == TENSORRT:
            built.append((provider, tensorrt_options(settings, image_size, max_batch_size)))
        elif provider == CUDA:
            built.append((provider, cuda_options(settings)))
        else:
            built.append((provider, {}))
    return built


def _preload_tensorrt() -> list[str]:
    """Load TensorRT's libraries from NVIDIA's `tensorrt-cu13-libs` wheel, if it is installed,
    so that the TensorRT provider finds them without LD_LIBRARY_PATH; returns what loaded."""
    spec = importlib.util.find_spec("tensorrt_libs")
    if spec is None or not spec.submodule_search_locations:
        return []  # the container's libraries, found by the loader's usual paths
    directory = Path(next(iter(spec.submodule_search_locations)))
    loaded = []
    for name in TENSORRT_LIBRARIES:
        path = directory / name
        if path.is_file():
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            loaded.append(name)
    return loaded


def preload_gpu_libraries(tensorrt: bool) -> None:
    """Load the CUDA and cuDNN wheels of `pip install '.[gpu]'` (and TensorRT's, for
    `tensorrt`) before a session asks for CUDA or TensorRT. Nothing here raises: a missing
    library shows as the provider failing to load, which the session then reports."""
    import onnxruntime as ort

    printed = io.StringIO()  # preload_dlls prints what it fails to load
    try:
        with contextlib.redirect_stdout(printed):
            ort.preload_dlls()
        if tensorrt:
            loaded = _preload_tensorrt()
            if loaded:
                log.info("loaded TensorRT from the tensorrt-cu13-libs wheel: %s", loaded)
    except (OSError, RuntimeError) as error:
        log.warning("could not preload GPU libraries: %s", error)
    if printed.getvalue().strip():
        log.info("onnxruntime.preload_dlls: %s", " ".join(printed.getvalue().split()))
