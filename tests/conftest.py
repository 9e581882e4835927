from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, running_server, servicediscovery_client


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real control plane for the session; tests use their own namespace names."""
    with running_server(tmp_path_factory.mktemp("server")) as process:
        yield process


@pytest.fixture(scope="session")
def sd(server: ServerProcess) -> Any:
    return servicediscovery_client(server.url)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name unique to the test, usable as a DNS label."""
    import hashlib

    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    return f"t{digest}"


def pytest_configure(config: pytest.Config) -> None:
    Path("test-artifacts").mkdir(exist_ok=True)
