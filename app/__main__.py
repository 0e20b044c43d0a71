"""`python -m app`: serve on VITSERVE_HOST:VITSERVE_PORT with uvicorn.

On SIGTERM uvicorn stops accepting, lets in-flight requests finish, then runs the lifespan's
shutdown, which drains the batcher. When the service cannot go on (app/failure.py), or the model
cannot be loaded, the process exits with status 3.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from app.failure import EXIT_STATUS
from app.http_limits import HttpLimits, LimitedHttpToolsProtocol
from app.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from app.main import app  # after logging is configured: importing it reads the settings

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Header size and time, and the connection cap: uvicorn has no options for them.
        http=LimitedHttpToolsProtocol.with_limits(HttpLimits.from_settings(settings)),
        # Every accepted request has its answer within the request timeout; wait that long.
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
    )
    server = uvicorn.Server(config)

    def stop_server() -> None:  # a graceful stop, as on SIGTERM, but without re-raising it
        server.should_exit = True

    app.state.failure.stop_server = stop_server
    server.run()
    if not server.started or app.state.failure.reason is not None:
        sys.exit(EXIT_STATUS)


if __name__ == "__main__":
    main()
