"""Provider options, built per provider from the settings and the model's own config (pure
functions: checked on any host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.providers import (
    CPU,
    CUDA,
    TENSORRT,
    cuda_options,
    preload_gpu_libraries,
    provider_options,
    tensorrt_options,
)
from app.settings import Settings


def test_cuda_options() -> None:
    options = cuda_options(Settings(device_id=3))
    assert options["device_id"] == "3"
    assert options["arena_extend_strategy"] == "kSameAsRequested"
    assert options["do_copy_in_default_stream"] == "1"
    assert options["enable_cuda_graph"] == "0"
    assert cuda_options(Settings(cuda_graphs=True))["enable_cuda_graph"] == "1"
    assert all(isinstance(value, str) for value in options.values())


def test_tensorrt_profile_follows_the_model(tmp_path: Path) -> None:
    settings = Settings(device_id=1, trt_fp16=True, trt_cache_dir=tmp_path / "trt")
    options = tensorrt_options(settings, (224, 160), 48)
    assert options["device_id"] == "1"
    assert options["trt_fp16_enable"] == "1"
    assert options["trt_profile_min_shapes"] == "pixel_values:1x3x224x160"
    assert options["trt_profile_opt_shapes"] == "pixel_values:48x3x224x160"
    assert options["trt_profile_max_shapes"] == "pixel_values:48x3x224x160"
    for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
        assert options[key] == str(tmp_path / "trt")
    assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "1"

    uncached = tensorrt_options(Settings(trt_fp16=False), (28, 28), 8)
    assert uncached["trt_fp16_enable"] == "0"
    assert uncached["trt_profile_max_shapes"] == "pixel_values:8x3x28x28"
    assert not any("cache" in key for key in uncached)


def test_provider_options_in_order() -> None:
    built = provider_options([TENSORRT, CUDA, CPU], Settings(), (32, 32), 16)
    assert [name for name, _ in built] == [TENSORRT, CUDA, CPU]
    assert built[0][1]["trt_profile_max_shapes"] == "pixel_values:16x3x32x32"
    assert built[1][1] == cuda_options(Settings())
    assert built[2][1] == {}


def test_settings_for_devices() -> None:
    assert not Settings().bucketed
    assert Settings(batch_buckets=True).bucketed and Settings(cuda_graphs=True).bucketed
    with pytest.raises(ValueError, match="inference_workers must be 1"):
        Settings(cuda_graphs=True, inference_workers=2)


def test_preload_never_raises_on_a_cpu_host() -> None:
    preload_gpu_libraries(tensorrt=False)
    preload_gpu_libraries(tensorrt=True)
