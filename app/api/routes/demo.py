"""The demo page: `GET /` and `/demo`, and its three assets, all served from `app/demo/`.

No CDN and no build step: the page is plain HTML, CSS and JavaScript that talk to the same API
as any client (`GET /v1/models`, `POST /classify`). `VITSERVE_DEMO=false` leaves it out.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"

# The only files served, and their types: nothing else under app/demo/ is reachable.
ASSETS = {
    "demo.css": "text/css; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "heatmap.js": "text/javascript; charset=utf-8",
}

# Everything from this origin, nothing from anywhere else; images the user picks are blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Revalidate on every load, so an upgraded server never runs with a stale script.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get("/demo")
async def page() -> FileResponse:
    """The demo page."""
    return FileResponse(
        DEMO_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={**HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


@router.get("/demo/assets/{name}")
async def asset(name: str) -> FileResponse:
    """One of the page's scripts or its stylesheet."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no demo asset named {name!r}")
    return FileResponse(DEMO_DIR / name, media_type=media_type, headers=HEADERS)
