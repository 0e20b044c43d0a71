"""`python -m app`: serve on VITSERVE_HOST:VITSERVE_PORT with uvicorn.

On SIGTERM (after VITSERVE_STOP_DELAY_S of failing readiness, app/stop_delay.py) uvicorn stops
accepting, lets in-flight requests finish, then runs the lifespan's shutdown, which drains the
batcher. When the service cannot go on (app/failure.py), or the model cannot be loaded, the
process exits with status 3.
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from fastapi import FastAPI

from app.failure import EXIT_STATUS
from app.http_limits import HttpLimits, LimitedHttpToolsProtocol
from app.settings import get_settings
from app.stop_delay import DelayedStopServer


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
    server = DelayedStopServer(config, settings.stop_delay_s, lambda: _stopping(app))

    def stop_server() -> None:  # a graceful stop, as on SIGTERM, but without re-raising it
        server.should_exit = True

    app.state.failure.stop_server = stop_server
    server.run()
    if not server.started or app.state.failure.reason is not None:
        sys.exit(EXIT_STATUS)


def _stopping(app: FastAPI) -> None:
    """Fail readiness from now on (requests are still served)."""
    if app.state.repository is not None:
        app.state.repository.stopping = True


if __name__ == "__main__":
    main()
