"""Optional API keys: where they come from (`VITSERVE_API_KEYS`) and whether a request's
`Authorization: Bearer <key>` header carries one.

Plain functions, so that every front end (the HTTP routes' dependency in app/api/auth.py, a
gRPC metadata check) asks the same question. Keys never appear in logs or error messages.
"""

from __future__ import annotations

import hmac
from pathlib import Path

SCHEME = "bearer"


def read_api_keys(value: str) -> frozenset[str]:
    """The keys `VITSERVE_API_KEYS` names: a file path (starting with `/` or `./`; one key a
    line, blank lines and `#` comments ignored) or keys separated by commas. Empty: none."""
    value = value.strip()
    if value.startswith(("/", "./")):
        try:
            text = Path(value).read_text()
        except OSError as exc:
            raise ValueError(
                f"api_keys names the file {value}, which cannot be read: {exc}"
            ) from exc
        keys = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    else:
        keys = [key.strip() for key in value.split(",")]
    found = frozenset(key for key in keys if key)
    if any(any(char.isspace() for char in key) for key in found):
        raise ValueError("an API key contains white space")
    return found


def key_is_valid(authorization: str | None, keys: frozenset[str]) -> bool:
    """Whether an `Authorization` header value is `Bearer <one of keys>`.

    Every key is compared, each in constant time (hmac.compare_digest), so the answer's timing
    tells nothing about how close a guess came or which key it matched.
    """
    if not authorization:
        return False
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != SCHEME:
        return False
    candidate = presented.strip().encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode("utf-8"))
    return matched
