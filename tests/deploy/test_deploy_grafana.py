"""Grafana under the `dashboards` profile: a pinned image on 127.0.0.1, anonymous viewers only,
the provisioned datasource and dashboard where the mounts put them; Prometheus mounts the
alerting rules where its config looks for them. (Every panel's query runs against a real
Prometheus in tests/app/test_serve_dashboard.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import yaml
from deploy_tools import COMPOSE_FILE, CPU_FILE, DOCKER_DIR, HOST_NETWORK_FILE, Compose

GRAFANA_DIR = DOCKER_DIR / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "vitserve.json"
DATASOURCE = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
PROVIDER = GRAFANA_DIR / "provisioning" / "dashboards" / "vitserve.yml"


def mounts(service: dict) -> dict[str, dict]:
    return {volume["target"]: volume for volume in service.get("volumes", [])}


def test_grafana_only_under_its_profile(compose: Compose) -> None:
    assert "grafana" not in compose.config(COMPOSE_FILE)["services"]
    grafana = compose.config(COMPOSE_FILE, profiles=("dashboards",))["services"]["grafana"]

    assert grafana["profiles"] == ["dashboards"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"]), grafana["image"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in grafana["ports"]] == [
        ("127.0.0.1", "3000", 3000)
    ]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["VITSERVE_PROMETHEUS_URL"] == "http://prometheus:9090"
    volumes = mounts(grafana)
    for target, source in [
        ("/etc/grafana/provisioning", GRAFANA_DIR / "provisioning"),
        ("/etc/grafana/dashboards", GRAFANA_DIR / "dashboards"),
    ]:
        assert Path(volumes[target]["source"]) == source
        assert volumes[target]["read_only"] is True
    home = PurePosixPath(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (
        str(home.parent) == "/etc/grafana/dashboards" and (DASHBOARD.parent / home.name).is_file()
    )


def test_provisioning_points_at_the_mounts() -> None:
    datasources = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert [(d["type"], d["url"]) for d in datasources] == [
        ("prometheus", "${VITSERVE_PROMETHEUS_URL}")
    ]
    providers = yaml.safe_load(PROVIDER.read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == ["/etc/grafana/dashboards"]
    uid = datasources[0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [inner for p in dashboard["panels"] for inner in [p, *p.get("panels", [])]]
    used = {p["datasource"]["uid"] for p in panels if "datasource" in p}
    used |= {t["datasource"]["uid"] for p in panels for t in p.get("targets", [])}
    assert used == {uid}
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert all(p.get("description") for p in panels if p["type"] != "row")


def test_prometheus_mounts_the_rules_where_its_config_looks(compose: Compose) -> None:
    for files, config_name in [
        ((COMPOSE_FILE,), "prometheus.yml"),
        ((COMPOSE_FILE, CPU_FILE, HOST_NETWORK_FILE), "prometheus.host.yml"),
    ]:
        prometheus = compose.config(*files)["services"]["prometheus"]
        config = yaml.safe_load((DOCKER_DIR / config_name).read_text())
        for rule_file in config["rule_files"]:
            target = str(PurePosixPath("/etc/prometheus") / rule_file)
            mount = mounts(prometheus)[target]
            assert Path(mount["source"]) == DOCKER_DIR / "prometheus" / "alerts.yml"
            assert mount["read_only"] is True


def test_host_network_grafana(compose: Compose) -> None:
    files = (COMPOSE_FILE, CPU_FILE, HOST_NETWORK_FILE)
    grafana = compose.config(*files, profiles=("dashboards",))["services"]["grafana"]
    assert grafana["network_mode"] == "host"
    assert not grafana.get("ports")
    assert grafana["environment"]["VITSERVE_PROMETHEUS_URL"] == "http://127.0.0.1:9090"
    assert grafana["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
