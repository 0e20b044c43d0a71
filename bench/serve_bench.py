"""Load benchmark of the service: raw onnxruntime vs the batching server vs a naive server.

    python bench/serve_bench.py [--duration 30] [--concurrency 1 8 32 64] [--out results.json]

In one run on one machine:
1. exports ViT-Ti/16 at 224 with random weights (training.export.export_model), unless
   --model-dir names an exported directory;
2. the server (`python -m app`, dynamic batching) under wrk at each concurrency, posting one
   multipart JPEG per request (bench/serve_wrk.lua);
3. raw onnxruntime throughput at the server's batch size with the server's session settings and
   as many concurrent runs as it has inference workers, measured at each concurrency between
   the two servers' runs, so that a neighbour's load drifting over the run hits all three alike;
4. the naive server: the same app with VITSERVE_MAX_BATCH_SIZE=1 (one session run per request).

Besides requests/s and latency, each point reports CPU time: the server process's per request
(/proc, Linux) against raw onnxruntime's per image, which is what the server's own overhead
costs whatever share of the cores the machine's other work leaves it, and wrk's share of a
core. wrk (Debian: apt-get install -y wrk) is the load generator: one thread, a separate and
cheap process sharing the machine with the server. Prints a Markdown table for docs/serving.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.cores import available_cores  # noqa: E402
from app.settings import Settings  # noqa: E402

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


class RawSession:
    """session.run alone at the server's batch size, session settings and number of workers."""

    def __init__(self, model_dir: Path, settings: Settings) -> None:
        from app.session import load_model

        self.settings = settings
        self.model = load_model(model_dir, settings)
        self.batch = np.random.default_rng(0).standard_normal(
            (settings.max_batch_size, *self.model.input_shape), dtype=np.float32
        )
        self.model.run(self.batch)  # warm-up

    def measure(self, seconds: float) -> dict[str, float]:
        """Images/s and CPU ms per image (this process: only the session works meanwhile)."""
        workers = self.settings.inference_workers
        runs = [0] * workers
        stop = time.perf_counter() + seconds

        def work(worker: int) -> None:
            while time.perf_counter() < stop or runs[worker] < 2:
                self.model.run(self.batch)
                runs[worker] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        started, cpu = time.perf_counter(), time.process_time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        images = sum(runs) * self.settings.max_batch_size
        return {
            "batch_size": self.settings.max_batch_size,
            "images_per_s": images / elapsed,
            "cpu_ms_per_image": 1000 * cpu / images,
            "batch_ms": 1000 * elapsed * workers / sum(runs),
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

    def cpu_s(self) -> float:
        """CPU seconds the server process has used, all threads (Linux /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def batch_sizes(self) -> tuple[float, float]:
        """(session runs, images) so far, from /metrics, summed over models and versions."""
        values = {"vitserve_batch_size_count": 0.0, "vitserve_batch_size_sum": 0.0}
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in values:
                values[name] += float(line.rsplit(" ", 1)[1])
        return values["vitserve_batch_size_count"], values["vitserve_batch_size_sum"]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def run_wrk(url: str, jpeg: Path, connections: int, seconds: float) -> dict[str, float]:
    """One wrk run: requests/s, p50/p99 latency (ms), errors, wrk's CPU (share of one core)."""
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
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"BENCH_JPEG": str(jpeg)},
    ).stdout
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
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
        "requests": fields["requests"],
        "wrk_cores": wrk_cpu / elapsed,
    }


def load_test(
    model_dir: Path,
    envs: dict[str, dict[str, str]],
    raw: RawSession,
    jpeg: Path,
    concurrency: list[int],
    seconds: float,
) -> dict[str, list[dict[str, float]]]:
    """Both servers up at once (idle ones sleep: no spinning); at each concurrency the batching
    server, raw onnxruntime and the naive server run back to back, so a noisy neighbour affects
    all three alike."""
    servers = {name: Server(model_dir, env) for name, env in envs.items()}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in (*servers, "raw")}
    try:
        for connections in concurrency:
            for name, server in servers.items():
                if name == "naive":  # raw onnxruntime between the two servers
                    row = raw.measure(min(10.0, seconds)) | {"concurrency": connections}
                    rows["raw"].append(row)
                    print("raw", json.dumps(row), flush=True)
                run_wrk(server.url, jpeg, connections, min(3.0, seconds))  # settle at this load
                runs_before, images_before = server.batch_sizes()
                cpu_before = server.cpu_s()
                row = run_wrk(server.url, jpeg, connections, seconds)
                cpu = server.cpu_s() - cpu_before
                runs, images = server.batch_sizes()
                row["mean_batch"] = (images - images_before) / max(1.0, runs - runs_before)
                row["cpu_ms_per_request"] = 1000 * cpu / max(1.0, row["requests"])
                row["load_average"] = os.getloadavg()[0]
                rows[name].append(row)
                print(name, json.dumps(row), flush=True)
        return rows
    finally:
        for server in servers.values():
            server.stop()


def markdown(results: dict) -> str:
    raw = results["raw"]
    lines = [
        f"raw onnxruntime, batch {raw['batch_size']}, {results['workers']} worker(s) x "
        f"{results['threads']} intra-op thread(s): **{raw['images_per_s']:.1f} images/s**, "
        f"{raw['cpu_ms_per_image']:.1f} CPU ms per image (mean of its runs between the servers': "
        + ", ".join(f"{row['images_per_s']:.1f}" for row in results["raw_runs"])
        + f" images/s); load average {results['load_average'][0]:.1f} before, "
        f"{results['load_average'][1]:.1f} after",
        "",
        "| server | concurrency | requests/s | % of raw | p50 ms | p99 ms | mean batch "
        "| CPU ms/request | raw CPU share | wrk cores | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("batching", "naive"):
        for row, raw_row in zip(results[name], results["raw_runs"], strict=True):
            lines.append(
                f"| {name} | {row['concurrency']} | {row['requests_per_s']:.1f} | "
                f"{100 * row['requests_per_s'] / raw_row['images_per_s']:.0f}% | "
                f"{row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row['mean_batch']:.1f} | "
                f"{row['cpu_ms_per_request']:.1f} | "
                f"{100 * raw['cpu_ms_per_image'] / row['cpu_ms_per_request']:.0f}% | "
                f"{row['wrk_cores']:.3f} | {row['errors']:.0f} |"
            )
    lines += [
        "",
        "% of raw: requests/s over the raw images/s measured at the same concurrency, between "
        "the two servers' runs. Raw CPU share: raw onnxruntime's CPU ms per image over the "
        "server's CPU ms per request (the part of the server's CPU that is the model).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, help="an exported model (default: export one)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="session runs at once")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="VITSERVE_MAX_WAIT_MS")
    parser.add_argument(
        "--threads", type=int, help="onnxruntime intra-op threads per run (default: cores/workers)"
    )
    parser.add_argument("--preprocess-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    with tempfile.TemporaryDirectory(prefix="vitserve-bench-") as tmp:
        model_dir = args.model_dir or export_vit_tiny(Path(tmp) / "vit-tiny")
        jpeg = bench_jpeg(Path(tmp) / "bench.jpg")
        settings = Settings(
            providers="cpu",
            intra_op_threads=args.threads or 0,
            inference_workers=args.workers,
            max_batch_size=args.batch_size,
        )
        env = {
            "VITSERVE_PROVIDERS": "cpu",
            "VITSERVE_INTRA_OP_THREADS": str(settings.onnx_threads),
            "VITSERVE_INFERENCE_WORKERS": str(args.workers),
            "VITSERVE_PREPROCESS_THREADS": str(args.preprocess_threads),
            "VITSERVE_MAX_BATCH_SIZE": str(args.batch_size),
            "VITSERVE_MAX_WAIT_MS": str(args.max_wait_ms),
        }
        load_before = os.getloadavg()[0]
        raw = RawSession(model_dir, settings)
        envs = {"batching": env, "naive": env | {"VITSERVE_MAX_BATCH_SIZE": "1"}}
        rows = load_test(model_dir, envs, raw, jpeg, args.concurrency, args.duration)
        raw_runs = rows.pop("raw")
        summary: dict[str, object] = {
            key: sum(row[key] for row in raw_runs) / len(raw_runs)
            for key in ("images_per_s", "cpu_ms_per_image", "batch_ms")
        }
        summary["batch_size"] = args.batch_size
        results: dict = {
            "cores": available_cores(),
            "workers": args.workers,
            "threads": settings.onnx_threads,
            "settings": env,
            "load_average": [load_before, os.getloadavg()[0]],
            "raw": summary,
            "raw_runs": raw_runs,
            **rows,
        }
    print(markdown(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
