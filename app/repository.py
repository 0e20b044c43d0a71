"""The models the service holds: which versions are loaded, which are served, and changing that
without dropping a request.

For each model the version policy (`latest:N` or `all`) picks, newest first, among the versions
that loaded, passed their checks and warmed up; a version that fails is logged, counted and
skipped (never served) and the next older one is tried. A change (poll mode: a version appeared
or went; explicit mode: a `load`/`unload` request) loads and warms the new version while the old
ones serve, then swaps the served set in one step (no await between reading and writing it), and
drains the versions that left it: they answer what they accepted, then unload.

Readiness lives here (`ready`): started, and every served version ready and its batcher alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app.errors import InvalidRequest, ModelNotFound, NotReady
from app.failure import Failure
from app.metrics import Metrics
from app.repository_layout import (
    OnDisk,
    Signature,
    VersionDir,
    scan_repository,
    single_model,
    version_key,
)
from app.runtime import ModelRuntime
from app.session import load_model
from app.settings import Settings

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (model, version)

_TRITON_STATES = {
    "loading": "LOADING",
    "ready": "READY",
    "draining": "UNLOADING",
    "unloaded": "UNAVAILABLE",
}


class StartupError(RuntimeError):
    """A model the service starts with cannot be served."""


@dataclass(frozen=True)
class VersionStatus:
    """One row of the repository index (states as Triton names them)."""

    name: str
    version: str
    state: str  # READY, LOADING, UNLOADING, UNAVAILABLE
    reason: str


class ModelRepository:
    """Owns every ModelRuntime; the protocols ask it for the runtime a request names."""

    def __init__(self, settings: Settings, metrics: Metrics, failure: Failure) -> None:
        """`failure`: where a served version reports that the service cannot go on (a dead
        batcher, a hung session run)."""
        self.settings = settings
        self.metrics = metrics
        self.failure = failure
        self.poll_s = settings.repository_poll_s if settings.model_repository else 0.0
        self.preprocess_pool = ThreadPoolExecutor(
            settings.decode_threads, thread_name_prefix="preprocess"
        )
        self._served: dict[str, list[ModelRuntime]] = {}  # model -> versions, newest first
        self._loaded: dict[Key, ModelRuntime] = {}  # served, warming or draining
        self._failed: dict[Key, tuple[Signature, str]] = {}  # never retried unchanged
        self._seen: dict[Key, Signature] = {}  # poll mode: signatures at the previous poll
        self._changing = asyncio.Lock()  # one change of the served set at a time
        self._draining: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self.started = False
        # Set on SIGTERM with a stop delay (app/stop_delay.py): readiness fails so that load
        # balancers take this replica out, while requests are still served.
        self.stopping = False

    # ---- what requests see

    @property
    def ready(self) -> bool:
        """Started, not failed or stopping, and every version served is warmed up and its
        batcher alive."""
        return (
            self.started
            and self.failure.reason is None
            and not self.stopping
            and bool(self._served)
            and all(
                runtime.ready and runtime.batcher.alive
                for versions in self._served.values()
                for runtime in versions
            )
        )

    def default_model(self) -> str:
        if self.settings.default_model:
            return self.settings.default_model
        names = list(self._served)
        if len(names) == 1:
            return names[0]
        if not names:
            raise NotReady("no model is loaded yet")
        raise ModelNotFound(
            f"{len(names)} models are served ({', '.join(sorted(names))}): name one "
            "(/v1/models/{name}/classify), or set VITSERVE_DEFAULT_MODEL"
        )

    def runtime(self, name: str | None = None, version: str | None = None) -> ModelRuntime:
        """The version a request names (default: the newest served) of the model it names."""
        if self.failure.reason is not None:  # exiting (app/failure.py): take no new work
            raise NotReady("the service has failed and is exiting")
        name = name if name is not None else self.default_model()
        versions = self._served.get(name)
        if not versions:
            raise ModelNotFound(f"model {name!r} is not served")
        if version is None:
            return versions[0]
        for runtime in versions:
            if runtime.version == version:
                return runtime
        raise ModelNotFound(f"model {name!r} has no version {version!r} served")

    def served(self) -> dict[str, list[ModelRuntime]]:
        """Every served model's versions, newest first."""
        return {name: list(versions) for name, versions in sorted(self._served.items())}

    def loaded(self) -> dict[str, list[ModelRuntime]]:
        """Every loaded version (served, warming up or draining), by model."""
        found: dict[str, list[ModelRuntime]] = {}
        for (name, _), runtime in sorted(self._loaded.items()):
            found.setdefault(name, []).append(runtime)
        return found

    def index(self) -> list[VersionStatus]:
        """Every version on disk or loaded, with its state."""
        on_disk = self._scan()
        keys = {(m, v) for m, versions in on_disk.items() for v in versions} | set(self._loaded)
        served = {(r.name, r.version) for rs in self._served.values() for r in rs}
        rows = []
        for name, version in sorted(keys, key=lambda k: (k[0], version_key(k[1]))):
            runtime = self._loaded.get((name, version))
            if runtime is not None:
                state = _TRITON_STATES[runtime.state]
                if state == "READY" and (name, version) not in served:
                    state = "LOADING"  # warmed up, not yet swapped in
                reason = ""
            elif (name, version) in self._failed:
                state, reason = "UNAVAILABLE", self._failed[(name, version)][1]
            else:
                state, reason = "UNAVAILABLE", "unloaded"
            rows.append(VersionStatus(name, version, state, reason))
        return rows

    # ---- start and stop

    async def open(self) -> None:
        """Load every model's versions (session open and checked); a model with no version
        that loads is a StartupError. Warm-up is `warm_up`'s job."""
        on_disk = self._scan()
        if not on_disk:
            raise StartupError(f"no model in {self.settings.model_repository}")
        if self.settings.default_model and self.settings.default_model not in on_disk:
            raise StartupError(
                f"VITSERVE_DEFAULT_MODEL={self.settings.default_model} is not in the repository"
            )
        for name, versions in on_disk.items():
            chosen = await self._choose(name, versions, lambda _: True, warm=False)
            if not chosen:
                reasons = "; ".join(
                    f"v{v}: {reason}" for (m, v), (_, reason) in self._failed.items() if m == name
                )
                raise StartupError(f"model {name!r} has no version that loads ({reasons})")
            self._served[name] = chosen
        self._remember(on_disk)

    async def warm_up(self) -> None:
        """Warm every loaded version, then report started (and start polling in poll mode)."""
        for versions in list(self._served.values()):
            for runtime in versions:
                await runtime.warm_up()
        self.started = True
        if self.poll_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="poller")

    async def close(self) -> None:
        """Stop polling; every loaded version answers what it accepted, then unloads."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        self.started = False
        self._served.clear()
        for runtime in list(self._loaded.values()):
            if runtime.state != "draining":
                self._drain(runtime)
        await asyncio.gather(*self._draining, return_exceptions=True)
        await asyncio.to_thread(self.preprocess_pool.shutdown, True)

    # ---- explicit mode: the repository API

    async def load(self, name: str) -> None:
        """(Re)load a model: pick up its versions on disk, retrying failed ones."""
        self._refuse_in_poll_mode("load")
        on_disk = self._scan()
        if name not in on_disk:
            raise InvalidRequest(f"failed to load {name!r}: no such model in the repository")
        async with self._changing:
            for key in [key for key in self._failed if key[0] == name]:
                del self._failed[key]
            chosen = await self._choose(name, on_disk[name], lambda _: True, warm=True)
            if not chosen:
                raise InvalidRequest(f"failed to load {name!r}: no version loaded and passed")
            self._switch(name, chosen)

    async def unload(self, name: str) -> None:
        """Stop serving a model: its versions drain, then unload."""
        self._refuse_in_poll_mode("unload")
        if name not in self._served and name not in self._scan():
            raise InvalidRequest(f"failed to unload {name!r}: no such model")
        async with self._changing:
            self._switch(name, [])

    def _refuse_in_poll_mode(self, action: str) -> None:
        if self.poll_s > 0:
            raise InvalidRequest(f"{action} is refused: the repository is in poll mode")
        if self.settings.model_repository is None:
            raise InvalidRequest(f"{action} needs VITSERVE_MODEL_REPOSITORY")

    # ---- poll mode

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll_once()
            except Exception:  # a bad scan must not stop polling
                log.exception("polling the repository failed")

    async def poll_once(self) -> None:
        """Load versions complete for one interval; drain versions and models that went."""
        on_disk = self._scan()
        async with self._changing:
            for name in sorted(set(self._served) | set(on_disk)):
                versions = on_disk.get(name, {})
                chosen = await self._choose(name, versions, self._unchanged, warm=True)
                current = self._served.get(name, [])
                if [r.version for r in chosen] != [r.version for r in current]:
                    self._switch(name, chosen)
            self._remember(on_disk)

    def _unchanged(self, version: VersionDir) -> bool:
        return self._seen.get((version.model, version.version)) == version.signature

    def _remember(self, on_disk: OnDisk) -> None:
        self._seen = {(m, v): d.signature for m, vs in on_disk.items() for v, d in vs.items()}

    # ---- loading, choosing, swapping

    def _scan(self) -> OnDisk:
        if self.settings.model_repository is not None:
            return scan_repository(self.settings.model_repository)
        return single_model(self.settings.model_dir)

    async def _choose(
        self,
        name: str,
        on_disk: dict[str, VersionDir],
        complete: Callable[[VersionDir], bool],
        *,
        warm: bool,
    ) -> list[ModelRuntime]:
        """The versions the policy serves, newest first, loading (and warming) those needed."""
        wanted = self.settings.served_versions
        chosen: list[ModelRuntime] = []
        for version in sorted(on_disk, key=version_key, reverse=True):
            if wanted is not None and len(chosen) >= wanted:
                break
            directory = on_disk[version]
            key = (name, version)
            runtime = self._loaded.get(key)
            if runtime is not None and runtime.state in ("loading", "ready"):
                chosen.append(runtime)
                continue
            failed = self._failed.get(key)
            if failed is not None and failed[0] == directory.signature:
                continue  # failed as it is now; a changed directory is tried again
            if not complete(directory):
                continue  # still being written: serve the older versions meanwhile
            runtime = await self._load(directory, warm=warm)
            if runtime is not None:
                chosen.append(runtime)
        return chosen

    async def _load(self, directory: VersionDir, *, warm: bool) -> ModelRuntime | None:
        """Open, check (and warm up) one version; None, logged and counted, if it fails."""
        name, version = directory.model, directory.version
        runtime: ModelRuntime | None = None
        try:
            model = await asyncio.to_thread(
                load_model, directory.path, self.settings, self._threads_per_session()
            )
            runtime = ModelRuntime(
                name,
                version,
                model,
                self.settings,
                self.preprocess_pool,
                self.metrics,
                on_failure=self.failure.fail,
            )
            if warm:
                await runtime.warm_up()
        except Exception as exc:
            log.error("model %s version %s is not served: %s", name, version, exc)
            self.metrics.model_loads.labels(name, "failed").inc()
            self._failed[(name, version)] = (directory.signature, str(exc))
            if runtime is not None:
                await runtime.drain()
            return None
        self.metrics.model_loads.labels(name, "loaded").inc()
        self._failed.pop((name, version), None)
        self._loaded[(name, version)] = runtime
        return runtime

    def _threads_per_session(self) -> int:
        """An equal share of the thread budget per model (at least 1), so that all models'
        sessions together stay within it; a version being swapped in shares its model's."""
        models = len(self._scan()) or 1
        return max(1, self.settings.onnx_threads // models)

    def _switch(self, name: str, chosen: list[ModelRuntime]) -> None:
        """Serve `chosen` for `name` from now on; drain the versions that leave. No await:
        a request sees the old set or the new one, never a mix."""
        if chosen:
            self._served[name] = chosen
        else:
            self._served.pop(name, None)
        log.info(
            "model %s now serves %s", name, ", ".join(f"v{r.version}" for r in chosen) or "nothing"
        )
        for key, runtime in list(self._loaded.items()):
            if key[0] == name and runtime not in chosen:
                self._drain(runtime)

    def _drain(self, runtime: ModelRuntime) -> None:
        """Drain in the background; the version stays listed (UNLOADING) until it is done."""
        runtime.state = "draining"  # at once: `_choose` and `index` see it leaving
        task = asyncio.get_running_loop().create_task(runtime.drain(), name="drain")
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)
        task.add_done_callback(_report_drain)
        task.add_done_callback(lambda _: self._forget(runtime))

    def _forget(self, runtime: ModelRuntime) -> None:
        key = (runtime.name, runtime.version)
        if self._loaded.get(key) is runtime:  # not a newer load of the same version
            del self._loaded[key]


def _report_drain(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.error("draining a model version failed", exc_info=task.exception())
