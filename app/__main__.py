"""`python -m app`: serve on VITSERVE_HOST:VITSERVE_PORT with uvicorn.

On SIGTERM uvicorn stops accepting, lets in-flight requests finish, then runs the lifespan's
shutdown, which drains the batcher.
"""

from __future__ import annotations

import logging

import uvicorn

from app.http_limits import HttpLimits, LimitedHttpToolsProtocol
from app.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Header size and time, and the connection cap: uvicorn has no options for them.
        http=LimitedHttpToolsProtocol.with_limits(HttpLimits.from_settings(settings)),
        # Every accepted request has its answer within the request timeout; wait that long.
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )


if __name__ == "__main__":
    main()
