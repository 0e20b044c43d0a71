"""docker compose accepts the files, and renders what docs/deploy.md promises: the GPU reserved
in docker-compose.yml and released by docker-compose.cpu.yml, Prometheus scraping the API,
`train` under a profile writing to the volume the API reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from deploy_tools import (
    COMPOSE_FILE,
    CPU_FILE,
    DOCKER_DIR,
    HAPROXY_CONFIG,
    HOST_NETWORK_FILE,
    ROOT,
    SCALE_FILE,
    Compose,
)

GPU = {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}


def gpu_devices(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def dockerfile_default(dockerfile: Path, arg: str) -> str:
    match = re.search(rf"^ARG {arg}=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert match, f"{dockerfile.name} has no default for ARG {arg}"
    return match.group(1)


def mounts(service: dict) -> dict[str, dict]:
    return {volume["target"]: volume for volume in service.get("volumes", [])}


def test_default_stack(compose: Compose) -> None:
    config = compose.config(COMPOSE_FILE)

    assert set(config["services"]) == {"api", "prometheus"}  # train only under its profile
    api, prometheus = config["services"]["api"], config["services"]["prometheus"]
    assert gpu_devices(api) == [GPU]
    assert api["restart"] == prometheus["restart"] == "unless-stopped"
    assert api["healthcheck"]["test"] == ["CMD", "vitserve-healthcheck"]
    assert "wget" in prometheus["healthcheck"]["test"]
    assert api["environment"]["VITSERVE_MODEL_DIR"] == "/models/default"  # the bundled model
    assert mounts(api)["/models"]["source"] == "models"
    assert mounts(api)["/models"]["read_only"] is True
    # TensorRT engines survive restarts in a volume of their own, writable by the API.
    assert api["environment"]["VITSERVE_TRT_CACHE_DIR"] == "/cache/tensorrt"
    assert mounts(api)["/cache/tensorrt"]["source"] == "trt-cache"
    assert not mounts(api)["/cache/tensorrt"].get("read_only", False)
    assert [(p["host_ip"], p["published"], p["target"]) for p in api["ports"]] == [
        ("127.0.0.1", "8000", 8000),
        ("127.0.0.1", "8001", 8001),  # gRPC
    ]
    assert [(p["host_ip"], p["published"]) for p in prometheus["ports"]] == [("127.0.0.1", "9090")]
    config_mount = mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    assert Path(config_mount["source"]) == DOCKER_DIR / "prometheus.yml"


def seconds(duration: str) -> float:
    """A compose duration ("45s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)([hms])", duration))


def test_api_is_hardened(compose: Compose) -> None:
    for files in (
        (COMPOSE_FILE,),
        (COMPOSE_FILE, CPU_FILE),
        (COMPOSE_FILE, CPU_FILE, HOST_NETWORK_FILE),
    ):
        api = compose.config(*files)["services"]["api"]
        assert api["read_only"] is True
        assert [mount.split(":")[0] for mount in api["tmpfs"]] == ["/tmp"]
        assert api["cap_drop"] == ["ALL"] and not api.get("cap_add")
        assert "no-new-privileges:true" in api["security_opt"]
        assert 0 < int(api["mem_limit"]) <= 64 * 2**30
        assert 0 < api["pids_limit"] <= 4096
        # Longer than the drain: uvicorn waits VITSERVE_REQUEST_TIMEOUT_S (30) + 5 s.
        assert seconds(api["stop_grace_period"]) > 35
        assert not api.get("privileged")
    prometheus = compose.config(COMPOSE_FILE)["services"]["prometheus"]
    assert prometheus["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in prometheus["security_opt"]


def test_api_can_be_published_on_every_interface(compose: Compose) -> None:
    api = compose.config(
        COMPOSE_FILE,
        VITSERVE_API_BIND="0.0.0.0",
        VITSERVE_API_PORT="8080",
        VITSERVE_API_MEMORY="2g",
    )["services"]["api"]
    published = [(p["host_ip"], p["published"]) for p in api["ports"]]
    assert published == [("0.0.0.0", "8080"), ("0.0.0.0", "8001")]  # HTTP, gRPC
    assert int(api["mem_limit"]) == 2 * 2**30


def test_train_profile(compose: Compose) -> None:
    config = compose.config(COMPOSE_FILE, profiles=("train",))

    train = config["services"]["train"]
    assert train["profiles"] == ["train"]
    assert gpu_devices(train) == [GPU]
    assert train["restart"] == "no"
    assert mounts(train)["/models"]["source"] == "models"
    assert not mounts(train)["/models"].get("read_only", False)
    command = train["command"]
    assert command[:4] == ["python", "-m", "training.run", "pipeline"]
    assert command[command.index("--preset") + 1] == "default"
    assert command[command.index("--out") + 1] == "/models/trained"


def test_variables_choose_images_and_model(compose: Compose) -> None:
    config = compose.config(
        COMPOSE_FILE,
        profiles=("train",),
        VITSERVE_SERVE_BASE_IMAGE="debian:bookworm",
        VITSERVE_PROMETHEUS_IMAGE="vitserve-prometheus:latest",
        VITSERVE_MODEL_DIR="/models/trained/model",
        VITSERVE_TRAIN_PRESET="tiny",
    )
    services = config["services"]
    assert services["api"]["build"]["args"]["BASE_IMAGE"] == "debian:bookworm"
    assert services["api"]["environment"]["VITSERVE_MODEL_DIR"] == "/models/trained/model"
    assert services["prometheus"]["image"] == "vitserve-prometheus:latest"
    assert "tiny" in services["train"]["command"]


def test_base_images_default_to_the_dockerfiles(compose: Compose) -> None:
    """The compose file names the same default base images as the Dockerfiles' ARGs."""
    services = compose.config(COMPOSE_FILE, profiles=("train",))["services"]
    for name, dockerfile in (("api", "Dockerfile.serve"), ("train", "Dockerfile.train")):
        build = services[name]["build"]
        assert Path(build["context"]) == ROOT
        assert build["dockerfile"] == f"docker/{dockerfile}"
        assert build["args"]["BASE_IMAGE"] == dockerfile_default(
            DOCKER_DIR / dockerfile, "BASE_IMAGE"
        )


def test_cpu_override_removes_the_gpu(compose: Compose) -> None:
    default = compose.config(COMPOSE_FILE, profiles=("train",))["services"]
    cpu = compose.config(COMPOSE_FILE, CPU_FILE, profiles=("train",))["services"]

    for name in ("api", "train"):
        assert gpu_devices(default[name]) == [GPU]
        assert gpu_devices(cpu[name]) == [], f"{name} still reserves a GPU"
    assert cpu["api"]["environment"]["VITSERVE_PROVIDERS"] == "cpu"
    # Nothing else changes: same images, volumes, ports, health checks.
    for name in ("api", "prometheus", "train"):
        for key in (
            "image",
            "volumes",
            "ports",
            "healthcheck",
            "restart",
            "command",
            "read_only",
            "cap_drop",
            "mem_limit",
        ):
            assert cpu[name].get(key) == default[name].get(key), (name, key)


def test_host_network_override(compose: Compose) -> None:
    files = (COMPOSE_FILE, CPU_FILE, HOST_NETWORK_FILE)
    services = compose.config(*files, profiles=("train",))["services"]

    for name in ("api", "prometheus", "train"):
        assert services[name]["network_mode"] == "host", name
        assert not services[name].get("ports"), name
    assert services["api"]["environment"]["VITSERVE_HOST"] == "127.0.0.1"
    assert services["api"]["build"]["network"] == "host"
    config_mount = mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"]
    assert Path(config_mount["source"]) == DOCKER_DIR / "prometheus.host.yml"
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]


def scrape_jobs(config_name: str) -> dict[str, dict]:
    config = yaml.safe_load((DOCKER_DIR / config_name).read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_prometheus_finds_every_replica_by_dns() -> None:
    """On the compose network each API replica is its own target: `api` resolved by DNS (one A
    record per replica), and the LB's exporter under `lb` when the scale override runs it."""
    jobs = scrape_jobs("prometheus.yml")
    for job, name, port in (("vitserve", "api", 8000), ("lb", "lb", 8404)):
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics"
        assert "static_configs" not in jobs[job]
        (lookup,) = jobs[job]["dns_sd_configs"]
        assert (lookup["names"], lookup["type"], lookup["port"]) == ([name], "A", port)
    assert "bind :8404" in HAPROXY_CONFIG.read_text()


def test_host_network_prometheus_scrapes_loopback() -> None:
    vitserve = scrape_jobs("prometheus.host.yml")["vitserve"]
    assert vitserve.get("metrics_path", "/metrics") == "/metrics"
    assert [t for group in vitserve["static_configs"] for t in group["targets"]] == [
        "127.0.0.1:8000"
    ]


def test_scale_override(compose: Compose) -> None:
    """With docker-compose.scale.yml the replicas publish nothing (so `--scale api=N` can't
    collide on a host port) and the LB takes the API's ports, on loopback by default."""
    services = compose.config(COMPOSE_FILE, CPU_FILE, SCALE_FILE)["services"]
    assert set(services) == {"api", "prometheus", "lb"}
    api, lb = services["api"], services["lb"]
    assert not api.get("ports")
    assert "container_name" not in api
    published = [(p["host_ip"], p["published"], p["target"]) for p in lb["ports"]]
    assert published == [("127.0.0.1", "8000", 8000), ("127.0.0.1", "8001", 8001)]
    assert lb["build"]["dockerfile"] == "docker/Dockerfile.lb"
    assert lb["build"]["args"]["BASE_IMAGE"] == dockerfile_default(
        DOCKER_DIR / "Dockerfile.lb", "BASE_IMAGE"
    )
    assert Path(mounts(lb)["/usr/local/etc/haproxy/haproxy.cfg"]["source"]) == HAPROXY_CONFIG
    assert "8404/healthz" in " ".join(lb["healthcheck"]["test"])
    assert lb["depends_on"]["api"]["condition"] == "service_started"
    # A stopping replica fails /readyz and serves on for longer than the LB's failed checks take
    # to take it out (haproxy.cfg); its grace period holds the delay and the drain.
    environment = dict(api["environment"])
    stop_delay_s = float(environment.pop("VITSERVE_STOP_DELAY_S"))
    check = re.search(r"\binter (\d+)s fall (\d+)\b", HAPROXY_CONFIG.read_text())
    assert check is not None
    assert int(check[1]) * int(check[2]) < stop_delay_s
    assert stop_delay_s + 30 + 5 < seconds(api["stop_grace_period"])
    # Everything else about the API is the stack's own.
    plain = compose.config(COMPOSE_FILE, CPU_FILE)["services"]["api"]
    assert {k: v for k, v in api.items() if k not in ("ports", "environment")} == {
        k: v for k, v in plain.items() if k not in ("ports", "environment")
    }
    assert environment == plain["environment"]


def test_scale_override_variables(compose: Compose) -> None:
    services = compose.config(
        COMPOSE_FILE,
        SCALE_FILE,
        VITSERVE_API_PORT="18000",
        VITSERVE_API_GRPC_PORT="18001",
        VITSERVE_API_BIND="0.0.0.0",
        VITSERVE_LB_IMAGE="lb:test",
    )["services"]
    lb = services["lb"]
    assert lb["image"] == "lb:test"
    published = [(p["host_ip"], p["published"]) for p in lb["ports"]]
    assert published == [("0.0.0.0", "18000"), ("0.0.0.0", "18001")]
