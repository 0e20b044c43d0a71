"""The demo page's files over HTTP: the page at / and /demo with a same-origin-only Content
Security Policy, every asset it names served by the app (nothing from another host), and none
of it with VITSERVE_DEMO=false. (test_demo_page.py drives it in a browser.)"""

from __future__ import annotations

import re

import pytest

# What the page loads: stylesheets, icons and scripts (not the links a person may follow).
ASSET = re.compile(r'<(?:link [^>]*href|script [^>]*src)="([^"#]+)"')


@pytest.mark.parametrize("path", ["/", "/demo"])
def test_the_page_and_its_assets(server, path: str) -> None:
    page = server.client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assets = [url for url in ASSET.findall(page.text) if not url.startswith("data:")]
    assert "demo/assets/demo.js" in assets and "demo/assets/demo.css" in assets
    for url in assets:
        assert "//" not in url, f"{url} is not served by the app"
        answer = server.client.get(f"/{url}")
        assert answer.status_code == 200, url
        assert not re.search(r"(https?:)?//[\w.-]+\.\w+/", answer.text), f"{url} loads from afar"
    module = server.client.get("/demo/assets/heatmap.js")  # imported by demo.js
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")


def test_unknown_assets_are_404_json(server) -> None:
    for name in ("nope.js", "index.html", "..%2Fmain.py"):
        answer = server.client.get(f"/demo/assets/{name}")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


def test_the_demo_can_be_turned_off(start_server) -> None:
    server = start_server(demo="false")
    for path in ("/", "/demo", "/demo/assets/demo.js"):
        answer = server.client.get(path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert server.client.get("/v1/models").status_code == 200
