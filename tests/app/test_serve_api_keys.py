"""Optional API keys (VITSERVE_API_KEYS) on a real server: inference routes need
`Authorization: Bearer <key>`, the probes stay open, /metrics as VITSERVE_METRICS_REQUIRE_KEY
says; the keys never reach the log."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagefiles import encode, photo

from app.api_keys import key_is_valid, read_api_keys

KEYS = ("k-first-4d1f9a0c2b7e", "k-second-93be01f7d2aa")
IMAGE = encode(photo(), "PNG")


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def classify(server, headers: dict[str, str] | None = None):
    return server.client.post(
        "/classify", content=IMAGE, headers={"content-type": "image/png", **(headers or {})}
    )


def assert_unauthorized(response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api_keys"
    path.write_text(f"# one key a line\n{KEYS[0]}\n\n  {KEYS[1]}  \n")
    return path


def test_keys_guard_inference_and_metrics(start_server, key_file: Path) -> None:
    server = start_server(api_keys=key_file, log_level="debug")

    assert_unauthorized(classify(server))
    assert_unauthorized(classify(server, bearer("k-first-4d1f9a0c2b7")))  # a prefix
    assert_unauthorized(classify(server, {"authorization": f"Basic {KEYS[0]}"}))
    assert_unauthorized(server.client.get("/v1/models"))
    assert_unauthorized(server.client.get("/metrics"))
    for key in KEYS:
        assert classify(server, bearer(key)).status_code == 200
    assert classify(server, {"authorization": f"bearer   {KEYS[1]}"}).status_code == 200
    assert server.client.get("/v1/models", headers=bearer(KEYS[0])).status_code == 200
    metrics = server.client.get("/metrics", headers=bearer(KEYS[1]))
    assert metrics.status_code == 200
    assert 'vitserve_rejected_total{reason="unauthorized"} 5.0' in metrics.text
    assert server.client.get("/healthz").status_code == 200
    assert server.client.get("/readyz").status_code == 200

    server.stop()
    log = server.log_path.read_text()
    assert "401" in log  # the access log was on
    assert not any(key in log for key in KEYS)


def test_metrics_can_stay_open(start_server) -> None:
    server = start_server(api_keys=",".join(KEYS), metrics_require_key="false")
    assert server.client.get("/metrics").status_code == 200
    assert_unauthorized(classify(server, bearer("wrong")))
    assert classify(server, bearer(KEYS[0])).status_code == 200


def test_without_keys_everything_is_open(server) -> None:
    assert classify(server).status_code == 200
    assert server.client.get("/metrics").status_code == 200


def test_key_is_valid() -> None:
    keys = frozenset(KEYS)
    assert key_is_valid(f"Bearer {KEYS[0]}", keys)
    assert key_is_valid(f"BEARER {KEYS[1]}", keys)
    for header in (None, "", "Bearer", f"Bearer {KEYS[0]}x", f"Token {KEYS[0]}", KEYS[0]):
        assert not key_is_valid(header, keys), header
    assert not key_is_valid("Bearer ключ", keys)  # non-ASCII: no error, just no match
    assert not key_is_valid(f"Bearer {KEYS[0]}", frozenset())


def test_read_api_keys(key_file: Path) -> None:
    assert read_api_keys("") == frozenset()
    assert read_api_keys(" a1, b2 ,,") == {"a1", "b2"}
    assert read_api_keys(str(key_file)) == set(KEYS)
    with pytest.raises(ValueError, match="cannot be read"):
        read_api_keys("/no/such/keys")
    with pytest.raises(ValueError, match="white space"):
        read_api_keys("two words")
