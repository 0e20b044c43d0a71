"""Load benchmark of the service: raw onnxruntime vs the batching server vs a naive server.

    python bench/serve_bench.py [--duration 30] [--concurrency 1 8 32 64] [--out results.json]

In one run on one machine:
1. exports ViT-Ti/16 at 224 with random weights (training.export.export_model), unless
   --model-dir names an exported directory;
2. raw onnxruntime throughput at the server's batch size, same session settings as the server;
3. the server (`python -m app`, dynamic batching) under wrk at each concurrency, posting one
   multipart JPEG per request (bench/serve_wrk.lua);
4. the naive server: the same app with VITSERVE_MAX_BATCH_SIZE=1 (one session run per request).

wrk (Debian: apt-get install -y wrk) is the load generator: one thread, a separate and cheap
process sharing the machine with the server. Prints a Markdown table for docs/serving.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.settings import Settings, available_cores  # noqa: E402

WRK_SCRIPT = REPO / "bench" / "serve_wrk.lua"


def export_vit_tiny(out_dir: Path) -> Path:
    """ViT-Ti/16 at 224, random weights (random head too, so the answers vary)."""
    import torch

    from model.config import config_from_name
    from model.vit import VisionTransformer
    from training.export import export_model

    torch.manual_seed(0)
    model = VisionTransformer(config_from_name("vit_tiny_patch16_224"))
    head = model.head
    assert isinstance(head, torch.nn.Linear)
    torch.nn.init.normal_(head.weight, std=0.02)
    return export_model(model.eval(), out_dir, name="vit-tiny-random", version="bench")


def bench_jpeg(path: Path, size: tuple[int, int] = (320, 240)) -> Path:
    """A photo-like JPEG (smooth gradients, a few shapes), about 15 KB."""
    from PIL import Image, ImageDraw

    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=-1)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 40, 200, 180), fill=(200, 60, 40))
    draw.rectangle((220, 100, 300, 220), fill=(30, 160, 90))
    image.save(path, "JPEG", quality=90)
    return path


def raw_throughput(model_dir: Path, settings: Settings, seconds: float) -> dict[str, float]:
    """Images/s of session.run alone at the server's batch size (after one warm-up run)."""
    from app.session import load_model

    model = load_model(model_dir, settings)
    batch = np.random.default_rng(0).standard_normal(
        (settings.max_batch_size, *model.input_shape), dtype=np.float32
    )
    model.run(batch)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or runs < 3:
        model.run(batch)
        runs += 1
    elapsed = time.perf_counter() - started
    return {
        "batch_size": settings.max_batch_size,
        "images_per_s": runs * settings.max_batch_size / elapsed,
        "batch_ms": 1000 * elapsed / runs,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, model_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VITSERVE_")}
        full_env |= env | {
            "VITSERVE_MODEL_DIR": str(model_dir),
            "VITSERVE_PORT": str(self.port),
            "VITSERVE_LOG_LEVEL": "warning",
        }
        self.process = subprocess.Popen([sys.executable, "-m", "app"], cwd=REPO, env=full_env)
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.2)

    def batch_sizes(self) -> tuple[float, float]:
        """(session runs, images) so far, from /metrics."""
        values = {}
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            for name in ("vitserve_batch_size_count", "vitserve_batch_size_sum"):
                if line.startswith(name + " "):
                    values[name] = float(line.split()[1])
        return values["vitserve_batch_size_count"], values["vitserve_batch_size_sum"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def run_wrk(url: str, jpeg: Path, connections: int, seconds: float) -> dict[str, float]:
    """One wrk run: requests/s, p50/p99 latency (ms), errors."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:.0f}s",
        "--timeout",
        "60s",
        "-s",
        str(WRK_SCRIPT),
        f"{url}/classify",
    ]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"BENCH_JPEG": str(jpeg)},
    ).stdout
    match = re.search(r"^BENCH (.*)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    fields = {k: float(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    return {
        "concurrency": connections,
        "requests_per_s": fields["requests"] / (fields["duration_us"] / 1e6),
        "p50_ms": fields["p50_us"] / 1000,
        "p99_ms": fields["p99_us"] / 1000,
        "errors": fields["errors_timeout"] + fields["errors_status"],
    }


def load_test(
    model_dir: Path,
    envs: dict[str, dict[str, str]],
    jpeg: Path,
    concurrency: list[int],
    seconds: float,
) -> dict[str, list[dict[str, float]]]:
    """Both servers up at once (idle ones sleep: no spinning); at each concurrency they run back
    to back, so a noisy neighbour affects both alike."""
    servers = {name: Server(model_dir, env) for name, env in envs.items()}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    try:
        for connections in concurrency:
            for name, server in servers.items():
                run_wrk(server.url, jpeg, connections, min(3.0, seconds))  # settle at this load
                runs_before, images_before = server.batch_sizes()
                row = run_wrk(server.url, jpeg, connections, seconds)
                runs, images = server.batch_sizes()
                row["mean_batch"] = (images - images_before) / max(1.0, runs - runs_before)
                rows[name].append(row)
                print(name, json.dumps(row), flush=True)
        return rows
    finally:
        for server in servers.values():
            server.stop()


def markdown(results: dict) -> str:
    raw = results["raw"]["images_per_s"]
    lines = [
        f"raw onnxruntime, batch {results['raw']['batch_size']}: **{raw:.1f} images/s** "
        "(mean of a run before and after the load tests: "
        + ", ".join(f"{x:.1f}" for x in results["raw"]["before_after"])
        + ")",
        "",
        "| server | concurrency | requests/s | % of raw | p50 ms | p99 ms | mean batch | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("batching", "naive"):
        for row in results[name]:
            lines.append(
                f"| {name} | {row['concurrency']} | {row['requests_per_s']:.1f} | "
                f"{100 * row['requests_per_s'] / raw:.0f}% | {row['p50_ms']:.0f} | "
                f"{row['p99_ms']:.0f} | {row['mean_batch']:.1f} | {row['errors']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="an exported model (default: export one)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=available_cores(), help="onnxruntime intra-op threads"
    )
    parser.add_argument("--preprocess-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    with tempfile.TemporaryDirectory(prefix="vitserve-bench-") as tmp:
        model_dir = args.model_dir or export_vit_tiny(Path(tmp) / "vit-tiny")
        jpeg = bench_jpeg(Path(tmp) / "bench.jpg")
        env = {
            "VITSERVE_PROVIDERS": "cpu",
            "VITSERVE_INTRA_OP_THREADS": str(args.threads),
            "VITSERVE_PREPROCESS_THREADS": str(args.preprocess_threads),
            "VITSERVE_MAX_BATCH_SIZE": str(args.batch_size),
        }
        settings = Settings(
            providers="cpu", intra_op_threads=args.threads, max_batch_size=args.batch_size
        )
        raw_seconds = min(20.0, args.duration)
        before = raw_throughput(model_dir, settings, raw_seconds)
        print("raw", json.dumps(before), flush=True)
        envs = {"batching": env, "naive": env | {"VITSERVE_MAX_BATCH_SIZE": "1"}}
        rows = load_test(model_dir, envs, jpeg, args.concurrency, args.duration)
        after = raw_throughput(model_dir, settings, raw_seconds)
        print("raw", json.dumps(after), flush=True)
        raw: dict[str, object] = dict(before)
        raw["images_per_s"] = (before["images_per_s"] + after["images_per_s"]) / 2
        raw["before_after"] = [before["images_per_s"], after["images_per_s"]]
        results: dict = {"cores": available_cores(), "settings": env, "raw": raw, **rows}
    print(markdown(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
