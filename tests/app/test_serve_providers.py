"""Execution providers: asked by name they must be what the session runs on, or no start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from app.providers import CPU, CUDA, TENSORRT, ProviderError, gpu_visible, requested_providers

GPU = "CUDAExecutionProvider" in ort.get_available_providers()


def test_requested_providers() -> None:
    everything = [TENSORRT, CUDA, CPU]
    assert requested_providers("auto", everything) == ([CUDA, CPU], None)
    assert requested_providers("auto", [CPU]) == ([CPU], None)
    assert requested_providers("cpu", everything) == ([CPU], CPU)
    assert requested_providers("cuda", everything) == ([CUDA, CPU], CUDA)
    assert requested_providers("tensorrt", everything) == ([TENSORRT, CUDA, CPU], TENSORRT)
    with pytest.raises(ProviderError, match="only offers CPUExecutionProvider"):
        requested_providers("cuda", [CPU])
    # No GPU visible: auto asks for the CPU alone; named GPU providers are still asked for.
    assert requested_providers("auto", everything, gpu=False) == ([CPU], None)
    assert requested_providers("cuda", everything, gpu=False) == ([CUDA, CPU], CUDA)


def test_gpu_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    dev, driver = tmp_path / "dev", tmp_path / "gpus"
    dev.mkdir()
    (dev / "nvidiactl").touch()  # the control node alone is no GPU
    assert not gpu_visible(dev, driver)
    (dev / "nvidia0").touch()
    assert gpu_visible(dev, driver)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not gpu_visible(dev, driver)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    (dev / "nvidia0").unlink()
    (driver / "0000:01:00.0").mkdir(parents=True)
    assert gpu_visible(dev, driver)
    (driver / "0000:01:00.0").rmdir()
    assert not gpu_visible(dev, driver)
    (dev / "dxg").touch()  # WSL2
    assert gpu_visible(dev, driver)


def gpu_present() -> bool:
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("providers", ["cuda", "tensorrt"])
def test_named_gpu_provider_without_a_gpu_refuses_to_start(start_server, providers: str) -> None:
    if gpu_present():
        server = start_server(providers=providers)
        (card,) = server.client.get("/v1/models").json()["models"]
        assert card["providers"][0] == requested_providers(providers, [TENSORRT, CUDA, CPU])[1]
        return
    server = start_server(wait=None, providers=providers)
    code = server.process.wait(timeout=60)
    assert code != 0
    log = server.log()
    assert f"VITSERVE_PROVIDERS={providers}" in log, log
    assert "Application startup failed" in log


def test_auto_falls_back_and_reports_what_it_runs_on(start_server) -> None:
    server = start_server(providers="auto")
    (card,) = server.client.get("/v1/models").json()["models"]
    assert card["providers"][-1] == CPU
    if not gpu_visible():  # onnxruntime's red "Failed to load ... CUDA" is not printed
        log = server.log()
        assert card["providers"] == [CPU]
        assert "CUDA" not in log and "[E:onnxruntime" not in log, log
    info = [
        line
        for line in server.client.get("/metrics").text.splitlines()
        if line.startswith("vitserve_model_info{")
    ]
    assert info and ",".join(card["providers"]) in info[0]


def test_app_never_imports_torch() -> None:
    code = (
        "import sys, app.main, app.__main__\n"
        "banned = [m for m in sys.modules if m.split('.')[0] in ('torch', 'model', 'training')]\n"
        "assert not banned, banned\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
