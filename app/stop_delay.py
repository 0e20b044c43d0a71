"""A pause between SIGTERM and closing the listening socket, for load balancers that find
replicas by health checks (HAProxy in docker-compose.scale.yml).

uvicorn closes its socket and its idle keep-alive connections the moment SIGTERM arrives. A
load balancer that still counts the replica as up may send a request down a pooled connection
just as it closes, and answers that client 502. With a delay, SIGTERM first fails readiness
(`/readyz`, the Open Inference Protocol's ready checks) while requests are still served; once the
balancer's checks have taken the replica out, the usual graceful stop follows. Kubernetes gets
the same from the pod's preStop sleep (deploy/k8s), so the delay defaults to 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

log = logging.getLogger(__name__)


class DelayedStopServer(uvicorn.Server):
    """uvicorn's server, but the first SIGTERM calls `on_stopping` and stops `delay_s` later.

    SIGINT (Ctrl-C), and a second SIGTERM during the delay, stop at once as uvicorn does.
    """

    def __init__(
        self, config: uvicorn.Config, delay_s: float, on_stopping: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self.delay_s = delay_s
        self.on_stopping = on_stopping
        self._delayed: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.delay_s <= 0 or self._delayed is not None:
            super().handle_exit(sig, frame)
            return
        self.on_stopping()
        log.info("SIGTERM: not ready; still serving for %g s, then stopping", self.delay_s)
        # uvicorn's main loop polls `should_exit`; setting it from a timer thread is enough.
        self._delayed = threading.Timer(self.delay_s, super().handle_exit, (sig, None))
        self._delayed.daemon = True
        self._delayed.start()
