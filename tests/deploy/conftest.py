"""The deployment tests' fixtures (their helpers live in deploy_tools.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from compose_stack import build_images
from deploy_tools import COMPOSE_VARIABLES, TIMINGS, Compose
from docker_engine import Engine, docker_engine


@pytest.fixture(scope="session")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    tool = Compose(tmp_path_factory.mktemp("docker-config"))
    for name in COMPOSE_VARIABLES:
        tool.env.pop(name, None)
    return tool


@pytest.fixture(scope="session")
def engine(compose: Compose) -> Iterator[Engine]:
    """A running Docker engine, one per session, shared by the stack tests."""
    with docker_engine(compose.env) as running:
        yield running
    print("\nstack timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="session")
def built(compose: Compose, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The engine with the test images, built once per session."""
    return build_images(compose, engine, tmp_path_factory.mktemp("build"))
