"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis on
hypothesis): valid and invalid requests of every documented shape against a real server, and
not one 500, 502 or 504; every error in its JSON error shape (the Open Inference Protocol's own
under /v2); every 503 with Retry-After."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode

if TYPE_CHECKING:  # types only: which file `conftest` names depends on how pytest starts
    from app_processes import Server, StartServer

REQUESTS = 1100  # at least 1,000 per run: 2-3 minutes on 2 cores busy with other jobs


def test_no_server_errors_from_generated_requests(start_server: StartServer) -> None:
    server: Server = start_server(max_upload_bytes=1_000_000)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    served = {"name": "vit-tiny-test", "version": "1"}  # so that model routes are reached
    cases = st.one_of(
        schema.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=served),
        schema.as_strategy(generation_mode=GenerationMode.NEGATIVE, path_parameters=served),
        schema.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: Case) -> None:
        response = case.call(base_url=server.url, timeout=30)
        statuses[response.status_code] += 1
        assert response.status_code not in (500, 502, 504), (case.as_curl_command(), response.text)
        if response.status_code == 503:
            assert "retry-after" in response.headers
        if response.status_code >= 400:
            error = response.json()["error"]
            if case.path.startswith("/v2"):  # the Open Inference Protocol's own error shape
                assert isinstance(error, str) and error
            else:
                assert set(error) == {"code", "message"}

    check()
    print(f"fuzzing: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= 1000, statuses
    assert statuses[200] > 0 and any(400 <= status < 500 for status in statuses), statuses
