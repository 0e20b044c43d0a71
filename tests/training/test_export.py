"""Export: checkpoint -> model.onnx + config.json, checked against PyTorch."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from export_checks import export_cli, reference, run_onnx
from onnx import TensorProto

from app.model_config import read_model_config
from model.load import load_model
from model.vit import VisionTransformer
from training import export
from training.export import export_checkpoint, export_model
from training.onnx_export import ExportCheckError, check_outputs

ROOT = Path(__file__).resolve().parents[2]
TINY_LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# ---------------------------------------------------------------------------------------------
# the model directory


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_pytorch(
    tiny_model_dir: Path, tiny_model: VisionTransformer, batch: int
) -> None:
    model = tiny_model
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    logits, attention = reference(model, x)
    got = run_onnx(tiny_model_dir, x.numpy())
    np.testing.assert_allclose(got["logits"], logits, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(got["attention"], attention, atol=1e-6, rtol=1e-4)
    assert len(set(got["logits"].argmax(-1).tolist())) > 1 or batch == 1  # a non-trivial head


def test_graph_signature_and_dynamic_batch(tiny_model_dir: Path) -> None:
    graph = onnx.load(str(tiny_model_dir / "model.onnx"))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert any(node.op_type == "LayerNormalization" for node in graph.graph.node)

    def signature(values: Any) -> dict[str, tuple[int, list[str | int]]]:
        return {
            v.name: (
                v.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        }

    inputs, outputs = signature(graph.graph.input), signature(graph.graph.output)
    assert list(inputs) == ["pixel_values"]
    assert list(outputs) == ["logits", "attention"]
    dtype, (batch, *rest) = inputs["pixel_values"]
    assert dtype == TensorProto.FLOAT and isinstance(batch, str) and rest == [3, 32, 32]
    assert outputs["logits"][0] == TensorProto.FLOAT and outputs["logits"][1][1:] == [10]
    assert outputs["attention"][0] == TensorProto.FLOAT and outputs["attention"][1][1:] == [4, 4]

    for size in (1, 2, 7):
        got = run_onnx(tiny_model_dir, np.zeros((size, 3, 32, 32), np.float32))
        assert got["logits"].shape == (size, 10)
        assert got["attention"].shape == (size, 4, 4)


def test_config_json(tiny_model_dir: Path, tiny_checkpoint: Path) -> None:
    config = read_model_config(tiny_model_dir)
    assert config.name == "vit-tiny-test"
    assert config.version == "1"
    assert config.architecture == "vit_tiny_patch8_32"
    assert config.labels == TINY_LABELS
    assert config.image_size == (32, 32)
    assert config.patch_size == 8
    assert config.grid == (4, 4)
    assert config.preprocess.resize == 32 and config.preprocess.crop == (32, 32)
    assert config.preprocess.interpolation == "bicubic"
    assert config.preprocess.mean == (0.5, 0.5, 0.5) and config.preprocess.std == (0.5, 0.5, 0.5)
    carried = torch.load(tiny_checkpoint, weights_only=True)["metrics"]
    assert config.metrics.model_dump() == carried and carried["top1"] is not None
    assert config.source.checkpoint == str(tiny_checkpoint)
    assert config.source.format == "native"
    assert config.precision == "fp32"
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == ["config.json", "model.onnx"]


def test_labels_default_to_class_indices_and_metrics_argument(
    tmp_path: Path, tiny_model: VisionTransformer
) -> None:
    model = tiny_model
    model.config = model.config.replace(labels=[])
    out = export_model(model, tmp_path / "m", metrics={"top1": 0.9, "dataset": "d", "loss": 1})
    config = read_model_config(out)
    assert config.labels == [str(i) for i in range(10)]
    assert config.name == "m"
    assert config.metrics.top1 == 0.9 and config.metrics.top5 is None
    with pytest.raises(ValueError, match="3 labels"):
        export_model(model, tmp_path / "bad", labels=["a", "b", "c"])


def test_cli_labels_file(tmp_path: Path, tiny_checkpoint: Path) -> None:
    labels = [f"digit {i}" for i in range(10)]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n\n")
    out = tmp_path / "model"
    code = export_cli(
        "--checkpoint",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "--labels",
        str(tmp_path / "labels.txt"),
        "--name",
        "digits",
        "--version",
        "3",
    )
    assert code == 0
    config = read_model_config(out)
    assert config.labels == labels
    assert (config.name, config.version) == ("digits", "3")


def test_cli_unreadable_checkpoint_fails(tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert export_cli("--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)) == 2
    assert not out.exists()


def test_cli_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.run", "export", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for option in (
        "--checkpoint",
        "--model-dir",
        "--out",
        "--arch",
        "--labels",
        "--image-size",
        "--fp16",
        "--int8",
        "--calibration",
        "--min-agreement",
    ):
        assert option in result.stdout


# ---------------------------------------------------------------------------------------------
# the self-check


def test_check_outputs_rejects_mismatches() -> None:
    want = {"logits": np.zeros((2, 3), np.float32), "attention": np.full((2, 4, 4), 0.1)}
    check_outputs(want, {k: v + 1e-7 for k, v in want.items()})
    with pytest.raises(ExportCheckError, match="logits: ONNX and PyTorch differ"):
        check_outputs(want, {**want, "logits": want["logits"] + 1e-2})
    with pytest.raises(ExportCheckError, match="attention: ONNX and PyTorch differ"):
        check_outputs(want, {**want, "attention": want["attention"] * 1.01})
    with pytest.raises(ExportCheckError, match="shape"):
        check_outputs(want, {**want, "logits": np.zeros((2, 4), np.float32)})
    with pytest.raises(ExportCheckError, match="no output 'attention'"):
        check_outputs(want, {"logits": want["logits"]})


def test_failed_check_fails_the_command_and_writes_nothing(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_verify = export.verify_onnx

    def verify_against_another_model(module: torch.nn.Module, *args: Any, **kw: Any) -> None:
        other = copy.deepcopy(module)
        with torch.no_grad():
            other.model.head.bias += 0.1  # type: ignore[union-attr,operator]
        real_verify(other, *args, **kw)

    monkeypatch.setattr(export, "verify_onnx", verify_against_another_model)
    out = tmp_path / "model"
    assert export_cli("--checkpoint", str(tiny_checkpoint), "--out", str(out)) == 1
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# foreign checkpoints


def test_export_from_timm_state_dict(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    source = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=5
    ).eval()
    torch.nn.init.normal_(source.head.weight, std=0.5)
    torch.save(source.state_dict(), tmp_path / "timm.pth")
    out = export_checkpoint(tmp_path / "timm.pth", tmp_path / "model")

    config = read_model_config(out)
    assert config.source.format == "timm"
    assert config.architecture == "vit_tiny_patch8_32"
    assert config.labels == ["0", "1", "2", "3", "4"]
    assert config.grid == (4, 4)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = source(x).numpy()
    np.testing.assert_allclose(run_onnx(out, x.numpy())["logits"], want, atol=1e-4, rtol=1e-4)


def test_export_from_huggingface_directory(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    labels = ["cat", "dog", "bird"]
    hf_config = transformers.ViTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        image_size=32,
        patch_size=8,
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    source = transformers.ViTForImageClassification(hf_config).eval()
    source.save_pretrained(tmp_path / "hf")
    out = export_checkpoint(tmp_path / "hf", tmp_path / "model", name="hf-vit")

    config = read_model_config(out)
    assert config.source.format == "huggingface"
    assert config.labels == labels
    assert (config.image_size, config.patch_size, config.grid) == ((32, 32), 8, (4, 4))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = source(pixel_values=x).logits.numpy()
    got = run_onnx(out, x.numpy())
    np.testing.assert_allclose(got["logits"], want, atol=1e-4, rtol=1e-4)
    # The attention map is the same rollout of the same model, loaded our way.
    _, attention = reference(load_model(tmp_path / "hf").model, x)
    np.testing.assert_allclose(got["attention"], attention, atol=1e-6, rtol=1e-4)


def test_image_size_option_resamples(tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = export_checkpoint(tiny_checkpoint, tmp_path / "model", image_size=48)
    config = read_model_config(out)
    assert config.image_size == (48, 48) and config.grid == (6, 6)
    assert config.preprocess.crop == (48, 48)
    got = run_onnx(out, np.zeros((2, 3, 48, 48), np.float32))
    assert got["attention"].shape == (2, 6, 6)
