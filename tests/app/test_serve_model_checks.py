"""A model directory that cannot be served stops the process with a non-zero status and the
reason in its log, at load (config.json against itself and against the graph) or at warm-up (a
run's outputs against config.json), under `python -O` too: no check is an `assert`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from model_dirs import copy_model_dir, with_symbolic_widths

from app.failure import EXIT_STATUS
from app.model_check import ModelError
from app.model_config import CONFIG_FILE, MODEL_FILE
from app.session import load_model
from app.settings import DEFAULT_MODEL_DIR, Settings

FIVE_LABELS = ["a", "b", "c", "d", "e"]


def bad_model_dirs(tiny: Path, out: Path) -> dict[str, tuple[Path, str]]:
    """name -> (model directory, what its log must say)."""

    def copy(name: str, **changes: object) -> Path:
        return copy_model_dir(tiny, out / name, **changes)

    no_config = copy("no_config")
    (no_config / CONFIG_FILE).unlink()
    not_json = copy("not_json")
    (not_json / CONFIG_FILE).write_text("{labels: oops")
    no_labels = copy("no_labels")
    (no_labels / CONFIG_FILE).write_text(
        (no_labels / CONFIG_FILE).read_text().replace('"labels"', '"x"')
    )
    garbage_onnx = copy("garbage_onnx")
    (garbage_onnx / MODEL_FILE).write_bytes(b"not a model at all")
    return {
        "labels vs logits": (
            copy("labels", labels=FIVE_LABELS),
            "logits has shape ['batch', 10], but config.json says [5] (the labels)",
        ),
        "grid vs attention": (
            copy("grid", patch_size=16, grid=[2, 2]),
            "attention has shape ['batch', 4, 4], but config.json says [2, 2] (the grid)",
        ),
        "crop vs input": (
            copy("crop", image_size=[28, 28], patch_size=7, preprocess={"crop": [28, 28]}),
            "pixel_values has shape ['batch', 3, 32, 32], but config.json says [3, 28, 28]",
        ),
        "grid vs image size": (
            copy("inconsistent", grid=[3, 3]),
            "grid [3, 3] does not match image_size [32, 32] / patch_size 8 = [4, 4]",
        ),
        "no config.json": (no_config, "no config.json"),
        "config.json not JSON": (
            not_json,
            "config.json does not fit the schema: file: Invalid JSON",
        ),
        "config.json without labels": (
            no_labels,
            "config.json does not fit the schema: labels: Field required",
        ),
        "model.onnx not a model": (garbage_onnx, "onnxruntime cannot load model.onnx"),
        "labels vs a run's logits (warm-up)": (
            with_symbolic_widths(tiny, out / "symbolic", labels=5),
            "cannot go on: warm-up failed: model directory",
        ),
    }


@pytest.fixture(scope="module")
def bad_dirs(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, str]]:
    return bad_model_dirs(tiny_model_dir, tmp_path_factory.mktemp("bad_models"))


LOAD_TIME = [
    "labels vs logits",
    "grid vs attention",
    "crop vs input",
    "grid vs image size",
    "no config.json",
    "config.json not JSON",
    "config.json without labels",
    "model.onnx not a model",
]


@pytest.mark.parametrize("case", LOAD_TIME)
def test_load_refuses_with_the_reason(bad_dirs: dict[str, tuple[Path, str]], case: str) -> None:
    model_dir, reason = bad_dirs[case]
    with pytest.raises(ModelError, match=re.escape(reason)):
        load_model(model_dir, Settings(model_dir=model_dir, providers="cpu", intra_op_threads=1))


@pytest.mark.parametrize("case", ["labels vs logits", "labels vs a run's logits (warm-up)"])
def test_the_process_exits_with_the_reason_under_python_o(
    start_server, bad_dirs: dict[str, tuple[Path, str]], case: str
) -> None:
    """At load (start-up fails) and at warm-up (after the server listens) alike."""
    model_dir, reason = bad_dirs[case]
    server = start_server(wait=None, python_flags=("-O",), model_dir=model_dir)
    assert server.process.wait(timeout=120) == EXIT_STATUS
    log = server.log()
    assert reason in log and str(model_dir) in log, log


@pytest.mark.slow
def test_every_bad_model_dir_exits_with_its_reason(
    start_server, bad_dirs: dict[str, tuple[Path, str]]
) -> None:
    servers = {  # all at once: each spends its start-up importing
        name: start_server(wait=None, python_flags=("-O",), model_dir=model_dir)
        for name, (model_dir, _) in bad_dirs.items()
    }
    problems = []
    for name, server in servers.items():
        code = server.process.wait(timeout=300)
        log = server.log()
        model_dir, reason = bad_dirs[name]
        if code != EXIT_STATUS or reason not in log or str(model_dir) not in log:
            problems.append(f"{name}: exit {code}, want {EXIT_STATUS} and {reason!r} in\n{log}")
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("model", ["bundled", "tiny"])
def test_good_models_pass_the_checks(tiny_model_dir: Path, model: str) -> None:
    model_dir = DEFAULT_MODEL_DIR if model == "bundled" else tiny_model_dir
    settings = Settings(model_dir=model_dir, providers="cpu", intra_op_threads=1, max_batch_size=4)
    load_model(model_dir, settings).warm_up(settings.max_batch_size)


def test_a_model_error_carries_its_reason(tiny_model_dir: Path, tmp_path: Path) -> None:
    """What a model repository logs when it skips a version."""
    model_dir = copy_model_dir(tiny_model_dir, tmp_path / "labels", labels=FIVE_LABELS)
    with pytest.raises(ModelError) as caught:
        load_model(model_dir, Settings(model_dir=model_dir, providers="cpu"))
    assert caught.value.model_dir == model_dir
    assert caught.value.reason.endswith("(the labels)")
