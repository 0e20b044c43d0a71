"""When the service cannot go on (its model failed to warm up, the batcher died, a session run
hung): say why, fail /readyz, and end the process with a non-zero status.

Plain Compose does not restart a container for being unhealthy, and an orchestrator may take
a while to notice; a process that exits is restarted by any policy (`restart: unless-stopped`,
a Kubernetes pod's restartPolicy, systemd's Restart=) with a fresh model and threads.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_STATUS = 3  # uvicorn's status for "Application startup failed": every can't-serve exit


def _terminate_self() -> None:
    """Ask the server for a graceful stop, as `docker stop` would (the default `stop_server`;
    `python -m app` replaces it with uvicorn's own flag)."""
    os.kill(os.getpid(), signal.SIGTERM)


class Failure:
    """The first reason the service cannot go on, or None while it can.

    `fail` asks the server to stop gracefully (stop accepting, let requests in flight get their
    answer or their 504), then after `grace_s` ends the process whatever is still running: a
    session run that hangs never returns, and neither would a normal interpreter exit, which
    waits for every worker thread.
    """

    def __init__(self, grace_s: float) -> None:
        self.reason: str | None = None
        self.grace_s = grace_s
        self.stop_server: Callable[[], None] = _terminate_self
        self.end_process: Callable[[], None] = _exit_now
        self._lock = threading.Lock()

    def fail(self, reason: str) -> None:
        """Record `reason` (the first one wins), stop the server, and end the process soon."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
        log.critical("cannot go on: %s; exiting with status %d", reason, EXIT_STATUS)
        deadline = threading.Timer(self.grace_s, self.end_process)
        deadline.daemon = True
        deadline.start()
        self.stop_server()


def _exit_now() -> None:
    log.critical("still running after the failure and its grace period; exiting now")
    logging.shutdown()
    os._exit(EXIT_STATUS)
