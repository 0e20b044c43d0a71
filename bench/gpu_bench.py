"""The GPU benchmark, staged so that what matters most runs first and every row prints as soon as
it is measured (a run cut short still tells something):

  raw        onnxruntime alone on ViT-B/16 at 224 (random weights, exported by our CLI code):
             fp32 and fp16, batch 1 / 32 / 256, the served graph (logits + attention) and the
             logits-only graph (what the attention map costs)
  server     `python -m app` end to end: JPEG uploads, 8 per request, 64..256 concurrent
             clients; img/s, p50/p99 per request, mean batch size, GPU utilisation (nvidia-smi)
  tensorrt   the TensorRT provider in fp16: time to ready from a cold and a warm engine cache,
             then raw img/s (skipped when onnxruntime has no TensorRT provider)
  precision  fp16 against fp32 on a fixed image set: the bundled model on its 1,000 held-out
             MNIST digits, and `--trained-model DIR` on `--trained-data` if given

    python bench/gpu_bench.py                       # everything, on CUDA (< 8 minutes)
    python bench/gpu_bench.py --stages raw server   # some stages
    python bench/gpu_bench.py --device cpu          # small sizes on the CPU (what CI runs)

Markdown tables on stdout; `--json FILE` keeps every row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

STAGES = ("raw", "server", "tensorrt", "precision")
FILES_PER_REQUEST = 8


@dataclass(frozen=True)
class Sizes:
    """What one device runs: the model, batch sizes, clients, durations."""

    arch: str
    overrides: dict[str, int]
    batches: tuple[int, ...]
    concurrency: tuple[int, ...]
    seconds: float  # per raw measurement
    server_seconds: float  # per server measurement
    max_batch_size: int  # the server's
    jpeg_size: tuple[int, int]


SIZES = {
    "cuda": Sizes("vit_base_patch16_224", {}, (1, 32, 256), (64, 256), 4.0, 15.0, 64, (224, 224)),
    "cpu": Sizes(
        "vit_tiny_patch8_32", {"depth": 2, "num_classes": 10}, (1, 8), (4,), 1.0, 3.0, 8, (32, 32)
    ),
}


class Table:
    """A Markdown table printed row by row."""

    def __init__(self, title: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
        self.columns = columns
        self.rows = rows
        print(f"\n### {title}\n", flush=True)
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns), flush=True)

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        cells = [row.get(column, "") for column in self.columns]
        text = [f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells]
        print("| " + " | ".join(text) + " |", flush=True)


def providers_for(device: str) -> list[str]:
    return ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]


# ---------------------------------------------------------------------------------------------
# models


def export_models(sizes: Sizes, work: Path) -> dict[str, Path]:
    """The served graph and the logits-only graph in fp32 and fp16, one random model."""
    import torch

    from model.config import config_from_name
    from model.vit import VisionTransformer
    from training.export import Conversion, convert_model_dir, export_model
    from training.onnx_export import export_onnx
    from training.onnx_graph import ViTLogits
    from training.precision import convert_to_fp16

    torch.manual_seed(0)
    model = VisionTransformer(config_from_name(sizes.arch, **sizes.overrides)).eval()
    head = model.head
    if isinstance(head, torch.nn.Linear):
        torch.nn.init.normal_(head.weight, std=0.02)  # random answers, not all class 0
    paths = {"served fp32": export_model(model, work / "fp32", name="bench") / "model.onnx"}
    fp16 = convert_model_dir(paths["served fp32"].parent, work / "fp16", Conversion("fp16"))
    paths["served fp16"] = fp16 / "model.onnx"
    logits = export_onnx(ViTLogits(model), work / "logits.fp32.onnx", model.config.image_size)
    paths["logits fp32"] = logits
    paths["logits fp16"] = convert_to_fp16(logits, work / "logits.fp16.onnx")
    return paths


def given_model(model_dir: Path, work: Path) -> dict[str, Path]:
    """An exported fp32 model directory and its fp16 conversion (no logits-only graph: that
    needs the checkpoint)."""
    from training.export import Conversion, convert_model_dir

    fp16 = convert_model_dir(model_dir, work / "fp16", Conversion("fp16"))
    return {"served fp32": model_dir / "model.onnx", "served fp16": fp16 / "model.onnx"}


def session(path: Path, providers: list[str], options: dict[str, str] | None = None) -> Any:
    import onnxruntime as ort

    settings = ort.SessionOptions()
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings.log_severity_level = 3
    chosen = [(p, options or {}) if p != "CPUExecutionProvider" else p for p in providers]
    sess = ort.InferenceSession(str(path), settings, providers=chosen)
    if sess.get_providers()[0] != providers[0]:
        # onnxruntime falls back to the CPU quietly: never report CPU numbers as a GPU's.
        raise SystemExit(
            f"{providers[0]} is not in use (the session runs on {sess.get_providers()})"
        )
    return sess


def images_per_s(sess: Any, batch: int, shape: tuple[int, int, int], seconds: float) -> float:
    """Steady img/s of `session.run` at `batch` (numpy in, numpy out, as the service runs)."""
    x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or runs < 3:
        sess.run(None, {name: x})
        runs += 1
    return runs * batch / elapsed


# ---------------------------------------------------------------------------------------------
# stages


def stage_raw(device: str, sizes: Sizes, paths: dict[str, Path], rows: list) -> None:
    from app.model_config import read_model_config

    config = read_model_config(paths["served fp32"].parent)
    shape = (3, *config.preprocess.crop)
    table = Table(
        f"raw onnxruntime, {sizes.arch}, {device}",
        ["graph", "batch", "img/s", "ms/batch"],
        rows,
    )
    for graph, path in paths.items():
        sess = session(path, providers_for(device))
        for batch in sizes.batches:
            rate = images_per_s(sess, batch, shape, sizes.seconds)
            table.add(
                stage="raw",
                graph=graph,
                batch=batch,
                **{"img/s": rate, "ms/batch": 1000 * batch / rate},
            )


class GpuUtilisation:
    """Samples `nvidia-smi` utilisation.gpu every 0.5 s in a thread; mean over the window."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = shutil.which("nvidia-smi") is not None

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if out:
                self.samples.append(float(out[0]))

    def __enter__(self) -> GpuUtilisation:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def mean(self) -> str:
        return f"{statistics.mean(self.samples):.0f}%" if self.samples else "n/a"


async def load(url: str, jpeg: bytes, clients: int, seconds: float) -> dict[str, float]:
    """`clients` loops posting 8 JPEGs per request for `seconds`: img/s and latency."""
    import httpx

    files = [("file", (f"{i}.jpg", jpeg, "image/jpeg")) for i in range(FILES_PER_REQUEST)]
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.post("/classify?attention=none&top_k=1", files=files)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "img/s": len(latencies) * FILES_PER_REQUEST / elapsed,
        "p50 ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99 ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "errors": errors,
    }


def stage_server(device: str, sizes: Sizes, model_dir: Path, rows: list) -> None:
    from serve_bench import Server, bench_jpeg

    jpeg = bench_jpeg(model_dir.parent / "upload.jpg", sizes.jpeg_size).read_bytes()
    env = {
        "VITSERVE_PROVIDERS": device,
        "VITSERVE_MAX_BATCH_SIZE": str(sizes.max_batch_size),
        "VITSERVE_MAX_QUEUE": str(max(256, 4 * max(sizes.concurrency) * FILES_PER_REQUEST)),
    }
    table = Table(
        f"server end to end, {sizes.arch} {model_dir.name}, {device}, "
        f"{FILES_PER_REQUEST} JPEGs of {sizes.jpeg_size[0]}x{sizes.jpeg_size[1]} per request",
        ["clients", "img/s", "p50 ms", "p99 ms", "mean batch", "GPU util", "errors"],
        rows,
    )
    server = Server(model_dir, env)
    try:
        for clients in sizes.concurrency:
            asyncio.run(load(server.url, jpeg, clients, min(3.0, sizes.server_seconds)))  # settle
            runs_before, images_before = server.batch_sizes()
            with GpuUtilisation() as gpu:
                result = asyncio.run(load(server.url, jpeg, clients, sizes.server_seconds))
            runs, images = server.batch_sizes()
            mean_batch = (images - images_before) / max(1.0, runs - runs_before)
            table.add(
                stage="server",
                clients=clients,
                **result,
                **{"mean batch": mean_batch, "GPU util": gpu.mean()},
            )
    finally:
        server.stop()


def stage_tensorrt(device: str, sizes: Sizes, model_dir: Path, rows: list) -> None:
    import onnxruntime as ort
    from serve_bench import Server

    table = Table("TensorRT fp16", ["start", "seconds to ready", "note"], rows)
    if device != "cuda" or "TensorrtExecutionProvider" not in ort.get_available_providers():
        table.add(stage="tensorrt", start="-", note="skipped: no TensorRT provider on this device")
        return
    cache = model_dir.parent / "trt-cache"
    env = {
        "VITSERVE_PROVIDERS": "tensorrt",
        "VITSERVE_TRT_FP16": "true",
        "VITSERVE_TRT_CACHE_DIR": str(cache),
        "VITSERVE_MAX_BATCH_SIZE": str(sizes.max_batch_size),
    }
    for start in ("cold cache", "warm cache"):
        started = time.perf_counter()
        try:
            server = Server(model_dir, env)
        except RuntimeError as error:
            table.add(stage="tensorrt", start=start, note=f"failed: {error}")
            return
        ready = time.perf_counter() - started
        server.stop()
        table.add(stage="tensorrt", start=start, **{"seconds to ready": ready})


def stage_precision(
    device: str, trained: Path | None, trained_data: str, count: int | None, rows: list
) -> None:
    from app.model_config import MODEL_FILE, read_model_config
    from app.settings import DEFAULT_MODEL_DIR
    from training.agreement import compare_graphs
    from training.data.arrays import check_images
    from training.precision import convert_to_fp16

    table = Table(
        f"fp16 vs fp32 on fixed images ({device})",
        [
            "model",
            "provider",
            "images",
            "top-1 agreement",
            "max abs dlogit",
            "top-1 fp32",
            "top-1 fp16",
        ],
        rows,
    )
    models = [("bundled vit-tiny-mnist", DEFAULT_MODEL_DIR, "mnist")]
    if trained is not None:
        models.append((f"trained {trained.name}", trained, trained_data))
    with tempfile.TemporaryDirectory() as tmp:
        for name, model_dir, data in models:
            config = read_model_config(model_dir)
            drawn = check_images(data, config.preprocess, 1, count).held_out
            half = convert_to_fp16(model_dir / MODEL_FILE, Path(tmp) / f"{len(rows)}.onnx")
            report = compare_graphs(
                model_dir / MODEL_FILE, half, drawn.images, drawn.targets, providers_for(device)
            )
            if report.provider != providers_for(device)[0]:
                raise SystemExit(f"the comparison ran on {report.provider}, not on {device}")
            table.add(
                stage="precision",
                provider=report.provider,
                model=name,
                images=report.num_images,
                **{
                    "top-1 agreement": f"{100 * report.top1_agreement:.2f}%",
                    "max abs dlogit": report.max_abs_logit_diff,
                    "top-1 fp32": f"{100 * (report.reference_top1 or 0):.2f}%",
                    "top-1 fp16": f"{100 * (report.candidate_top1 or 0):.2f}%",
                },
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=sorted(SIZES), default="cuda")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument(
        "--model-dir", type=Path, help="an exported fp32 model to use instead of a random one"
    )
    parser.add_argument("--trained-model", type=Path, help="a model directory for `precision`")
    parser.add_argument("--trained-data", default="digits", help="its data (default: digits)")
    parser.add_argument(
        "--check-images", type=int, help="precision: held-out images per model (default: all)"
    )
    parser.add_argument("--seconds", type=float, help="per raw measurement")
    parser.add_argument("--server-seconds", type=float, help="per server measurement")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    sizes = SIZES[args.device]
    if args.seconds:
        sizes = Sizes(**{**sizes.__dict__, "seconds": args.seconds})
    if args.server_seconds:
        sizes = Sizes(**{**sizes.__dict__, "server_seconds": args.server_seconds})
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        needs_models = {"raw", "server", "tensorrt"} & set(args.stages)
        paths: dict[str, Path] = {}
        if needs_models and args.model_dir is not None:
            paths = given_model(args.model_dir, Path(tmp))
        elif needs_models:
            paths = export_models(sizes, Path(tmp))
            print(f"exported {sizes.arch} in {time.perf_counter() - started:.0f} s", flush=True)
        if "raw" in args.stages:
            stage_raw(args.device, sizes, paths, rows)
        if "server" in args.stages:
            stage_server(args.device, sizes, paths["served fp32"].parent, rows)
            if args.device == "cuda":
                stage_server(args.device, sizes, paths["served fp16"].parent, rows)
        if "tensorrt" in args.stages:
            stage_tensorrt(args.device, sizes, paths["served fp32"].parent, rows)
        if "precision" in args.stages:
            stage_precision(
                args.device, args.trained_model, args.trained_data, args.check_images, rows
            )
    print(f"\ndone in {time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
