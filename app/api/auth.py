"""API keys as FastAPI dependencies: every inference route depends on `require_api_key`;
/metrics on `require_api_key_for_metrics`. With `VITSERVE_API_KEYS` empty both let all through.

The check itself is `app.api_keys.key_is_valid`, for front ends that are not FastAPI routes.
"""

from __future__ import annotations

from fastapi import Depends, Request

from app.api.deps import SettingsDep
from app.api_keys import key_is_valid
from app.errors import Unauthorized


def require_api_key(request: Request, settings: SettingsDep) -> None:
    """401 unless API keys are off or the request carries `Authorization: Bearer <a key>`."""
    keys = settings.api_key_set
    if keys and not key_is_valid(request.headers.get("authorization"), keys):
        raise Unauthorized()


def require_api_key_for_metrics(request: Request, settings: SettingsDep) -> None:
    """As `require_api_key`, where `VITSERVE_METRICS_REQUIRE_KEY` is on (the default)."""
    if settings.metrics_require_key:
        require_api_key(request, settings)


API_KEY = Depends(require_api_key)
METRICS_API_KEY = Depends(require_api_key_for_metrics)
