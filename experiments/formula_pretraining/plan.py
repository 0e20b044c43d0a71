"""Which runs the experiment makes, what each waits for, and running them on both cores.

Per initialisation: its pre-training (if any), then one fine-tuning per learning rate of the
grid on the selection shots, scored on the validation digits; the best rate is then used for
every seed, shot count and budget of that initialisation. `jobs` processes each take the first
ready run in the list: pre-trainings, then the pre-trained initialisations' runs (the longest
chain), then the rest, so scratch runs fill a free core while the other pre-trains and never
hold up the runs that waited for a pre-training.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import torch

from experiments.formula_pretraining.jobs import (
    FinetuneJob,
    Init,
    Job,
    PretrainJob,
    execute,
    read_result,
)
from experiments.formula_pretraining.settings import Settings

log = logging.getLogger("experiments.formula_pretraining")


@dataclass(frozen=True)
class Task:
    """A run (`job`, built once `deps` have results) or a choice made from results (`reduce`)."""

    key: str
    deps: tuple[str, ...] = ()
    job: Callable[[dict[str, Any]], Job] | None = None
    reduce: Callable[[dict[str, Any]], Any] | None = None


def headline_inits(settings: Settings) -> list[Init]:
    inits = [Init("vit", "contours", settings.pretrain_images), Init("vit"), Init("cnn")]
    if settings.fractal:
        inits.append(Init("vit", "fractal", settings.pretrain_images))
    return inits


def sweep_inits(settings: Settings) -> list[Init]:
    if not settings.sweep:
        return []
    return [Init(a, "contours", n) for n in settings.sweep_images for a in ("vit", "cnn")]


def rate_owner(settings: Settings, init: Init) -> Init:
    """Whose chosen learning rate `init` uses: a sweep point that of its architecture
    pre-trained on the headline's number of contours."""
    if init.source == "contours":
        return Init(init.arch, "contours", settings.pretrain_images)
    return init


def choose_rate(settings: Settings, init: Init, results: dict[str, Any]) -> dict[str, Any]:
    """The grid's best validation top-1 (the first of equals)."""
    scores = {lr: results[f"select:{init.name}:{lr:g}"]["top1"] for lr in settings.lr_grid}
    best = max(settings.lr_grid, key=lambda lr: scores[lr])
    log.info("%s: learning rate %g chosen from %s", init.name, best, scores)
    return {"init": init.name, "lr": best, "val_top1": {f"{lr:g}": v for lr, v in scores.items()}}


def _ready(job: Job, results: dict[str, Any]) -> Job:
    """A job that needs nothing from the results it waited for."""
    return job


def build_tasks(settings: Settings) -> list[Task]:
    """Every task, in the order free processes take them: the headline comparison first (its
    pre-trained initialisations before the scratch ones), then the sweep."""
    s = settings
    tasks: dict[str, Task] = {}
    select_shots = min(s.shots)

    def add(task: Task) -> None:
        tasks.setdefault(task.key, task)

    def needs(init: Init) -> tuple[str, ...]:
        return (f"pretrain:{init.name}",) if init.source is not None else ()

    def prepare(init: Init) -> None:
        """Its pre-training, and the choice of the rate it (or its owner) is fine-tuned with."""
        owner = rate_owner(s, init)
        for i in dict.fromkeys((init, owner)):
            if i.source is not None:
                add(Task(f"pretrain:{i.name}", job=functools.partial(_ready, PretrainJob(s, i))))
        for lr in s.lr_grid:
            job = FinetuneJob(s, owner, select_shots, None, s.steps, lr)
            add(
                Task(
                    f"select:{owner.name}:{lr:g}", needs(owner), job=functools.partial(_ready, job)
                )
            )
        deps = tuple(f"select:{owner.name}:{lr:g}" for lr in s.lr_grid)
        add(Task(f"rate:{owner.name}", deps, reduce=functools.partial(choose_rate, s, owner)))

    def run(init: Init, shots: int, seed: int, steps: int) -> None:
        owner = rate_owner(s, init)
        keep = seed == 0 and shots == select_shots and steps == s.steps and init.arch == "vit"

        def job(r: dict[str, Any]) -> Job:
            lr = r[f"rate:{owner.name}"]["lr"]
            return FinetuneJob(s, init, shots, seed, steps, lr, keep_weights=keep)

        key = f"run:{init.name}:{shots}:{seed}:{steps}"
        add(Task(key, (*needs(init), f"rate:{owner.name}"), job=job))

    headline = sorted(headline_inits(s), key=lambda i: i.source is None)  # pre-trained first
    for init in headline:
        prepare(init)
    for steps in s.budgets():
        for shots in s.shots:
            for init in headline:
                for seed in range(s.seeds):
                    run(init, shots, seed, steps)
    for init in sweep_inits(s):  # point by point: each finishes before the next starts
        prepare(init)
        for seed in range(s.sweep_seeds):
            run(init, 10, seed, s.steps)
    return list(tasks.values())


def _worker_start() -> None:
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")


def finished_results(tasks: list[Task]) -> dict[str, Any]:
    """The results of the runs already made, starting none: the runs still missing (and the
    choices and runs that wait for them) are left out."""
    results: dict[str, Any] = {}
    for task in tasks:  # listed after what they wait for
        if not all(d in results for d in task.deps):
            continue
        if task.reduce is not None:
            results[task.key] = task.reduce(results)
        elif task.job is not None and (found := read_result(task.job(results).result_path)):
            results[task.key] = found
    return results


def run_tasks(tasks: list[Task], jobs: int) -> dict[str, Any]:
    """Every task's result by key. Finished runs are read back, not run again."""
    results: dict[str, Any] = {}
    waiting = list(tasks)
    running: dict[Future[dict[str, Any]], str] = {}
    pool = None
    if jobs > 1:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_start)
    try:
        while waiting or running:
            for task in [t for t in waiting if all(d in results for d in t.deps)]:
                if pool is not None and len(running) >= jobs:
                    break  # the next free process takes the first ready task in the list
                waiting.remove(task)
                if task.reduce is not None:
                    results[task.key] = task.reduce(results)
                    continue
                if task.job is None:
                    raise ValueError(f"task {task.key} has neither a job nor a reduce")
                job = task.job(results)
                if pool is None:
                    results[task.key] = execute(job)
                elif (found := read_result(job.result_path)) is not None:
                    results[task.key] = found
                else:
                    running[pool.submit(execute, job)] = task.key
            if running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    results[running.pop(future)] = future.result()
            elif waiting and not any(all(d in results for d in t.deps) for t in waiting):
                raise RuntimeError(f"tasks wait for results nobody makes: {waiting[0].key}")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return results
