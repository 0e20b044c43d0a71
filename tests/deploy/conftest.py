"""The deployment tests' fixtures (their helpers live in deploy_tools.py)."""

from __future__ import annotations

import pytest
from deploy_tools import COMPOSE_VARIABLES, Compose


@pytest.fixture(scope="session")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    tool = Compose(tmp_path_factory.mktemp("docker-config"))
    for name in COMPOSE_VARIABLES:
        tool.env.pop(name, None)
    return tool
