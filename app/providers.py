"""Which onnxruntime execution providers to ask for, and which one the session must run on.

onnxruntime-gpu lists CUDA as available on every machine, GPU or not, and asking for it where
there is no GPU prints a red "failed to load libonnxruntime_providers_cuda" error before
falling back to the CPU. So `auto` asks for CUDA only where this process can see an NVIDIA GPU;
`cuda` and `tensorrt` always ask, and the service refuses to start when they are not used.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.settings import Providers

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
