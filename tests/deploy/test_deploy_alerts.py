"""The alerting rules: `promtool check rules`, `promtool test rules`, and a unit test for each
alert that fires and one in which it stays silent. (tests/app/test_serve_dashboard.py loads them
into a real Prometheus that scrapes a real server.)"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from deploy_tools import DOCKER_DIR, require

RULES = DOCKER_DIR / "prometheus" / "alerts.yml"
RULE_TESTS = DOCKER_DIR / "prometheus" / "alerts.test.yml"
PROMTOOL = "install Debian's prometheus (apt-get install prometheus)"


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules() -> None:
    done = subprocess.run(
        [require("promtool", PROMTOOL), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in done.stdout


def test_promtool_test_rules() -> None:
    done = subprocess.run(
        [require("promtool", PROMTOOL), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("alert", alert_names())
def test_each_alert_has_a_firing_and_a_silent_case(alert: str) -> None:
    fires, silent = False, False
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        checks = [c for c in case.get("alert_rule_test", []) if c["alertname"] == alert]
        fires |= any(check.get("exp_alerts") for check in checks)
        silent |= bool(checks) and not any(check.get("exp_alerts") for check in checks)
    assert fires, f"no test in which {alert} fires"
    assert silent, f"no test in which {alert} stays silent throughout"
