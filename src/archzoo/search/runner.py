"""The search loop: workers taking slots from the store, proposing, evaluating, recording.

:func:`run_search` is what ``archzoo search`` calls: it opens (or joins) the store, starts
``workers - 1`` more worker processes on it, works itself, waits until every slot is done and
writes the report. :func:`run_worker` is one worker's loop; a worker on another machine is the
same command with the same options and ``--storage``. Every worker appends one JSON line per
event to ``DIR/events.jsonl``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..validate import UserError
from .objectives import Objective
from .spaces import make_space
from .store import TrialStore
from .strategies import make_strategy


@dataclass
class Settings:
    """Everything a worker needs (plain JSON, so it travels to worker processes)."""

    out: str
    space: str = "cells"
    strategy: str = "random"
    trials: int = 10
    seed: int = 0
    storage: str | None = None
    study: str = "archzoo-search"
    workers: int = 1
    space_options: dict = field(default_factory=dict)
    strategy_options: dict = field(default_factory=dict)
    objective: dict = field(default_factory=dict)
    threads: int | None = None
    stale_after: float = 300.0
    progress: bool = True
    report: bool = True

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve() / 'search.db'}"

    def config(self, space, strategy, objective) -> dict:
        """What must agree between the workers of one search (the budget may grow on resume)."""
        return {"space": space.config(), "strategy": strategy.config(), "objective": objective.config(),
                "seed": self.seed}


class EventLog:
    """JSON lines appended to ``DIR/events.jsonl``, one ``write`` per event (whole lines even
    with several processes appending)."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, event: str, **fields) -> None:
        line = json.dumps({"time": round(time.time(), 3), "pid": os.getpid(), "event": event, **fields}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class Progress:
    """``[####......] 3/10 best 0.8125`` on stderr: redrawn on a terminal, a line per trial otherwise."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.tty = total, enabled, sys.stderr.isatty()

    def update(self, done: int, best: float | None, note: str = "") -> None:
        if not self.enabled:
            return
        width = 20
        fill = int(width * done / max(self.total, 1))
        text = f"[{'#' * fill}{'.' * (width - fill)}] {done}/{self.total}"
        text += f" best {best:.4f}" if best is not None else ""
        text += f"  {note}" if note else ""
        print(("\r" + text.ljust(78)) if self.tty else text, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def _parts(settings: Settings):
    space = make_space(settings.space, **settings.space_options)
    try:
        strategy = make_strategy(settings.strategy, space, settings.seed, **settings.strategy_options)
    except (TypeError, ValueError) as e:
        raise UserError(f"--strategy {settings.strategy}: {e}") from None
    return space, strategy, Objective(**settings.objective)


def open_store(settings: Settings, space, strategy, objective) -> TrialStore:
    store = TrialStore(settings.storage_url(), settings.config(space, strategy, objective), study=settings.study,
                       stale_after=settings.stale_after)
    if store.budget < settings.trials:
        store.set_budget(settings.trials)
    return store


def run_worker(settings: Settings, store: TrialStore | None = None, progress: Progress | None = None) -> int:
    """Take and run slots until every slot of the search is done; return how many this worker ran."""
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    space, strategy, objective = _parts(settings)
    store = store or open_store(settings, space, strategy, objective)
    log = EventLog(Path(settings.out) / "events.jsonl")
    ran = 0
    while True:
        for slot in store.reclaim_stale():
            log("requeued", slot=slot)
        run = store.start()
        if run is None:
            if len(store.done_slots()) >= store.budget:
                return ran
            time.sleep(0.5)  # the last slots run elsewhere; wait to take over any whose worker dies
            continue
        decisions = run.decisions
        if decisions is None:
            decisions, meta = strategy.propose(run.slot, store.finished(), store.pending(but=run.trial.number))
            store.record_proposal(run, decisions, meta)
        genotype = space.genotype(decisions)
        log("trial_start", slot=run.slot, trial=run.trial.number, retried=run.retried, genotype=genotype,
            meta=run.meta)
        try:
            score, metrics = objective.evaluate(space, decisions, seed=settings.seed + run.slot)
            error = None
        except (RuntimeError, ValueError) as e:  # e.g. a cell too deep for the image: the slot ends failed
            score, metrics, error = None, {}, f"{type(e).__name__}: {e}"
        store.finish(run, metrics, score, error)
        ran += 1
        log("trial_end", slot=run.slot, trial=run.trial.number, score=score, metrics=metrics, error=error)
        if progress is not None:
            done = store.done()
            scores = [t.value for t in done if t.state.name == "COMPLETE"]
            progress.update(len(done), max(scores) if scores else None, f"slot {run.slot}: "
                            + (f"{score:.4f}" if score is not None else error or metrics.get("infeasible", "")))


def _check_input(space, objective) -> None:
    from ..registry import model_card

    _, h, w = model_card(space.model).min_input_size
    _, hi, wi = objective.input_size()
    if hi < h or wi < w:
        raise UserError(f"the {space.name} space builds {space.model}, which needs inputs of at least {h}x{w} pixels; "
                        f"--data {objective.data} gives {hi}x{wi}: pass --image-size {max(h, w)} or more")


def worker_main(settings: dict) -> None:
    """Entry point of a worker process started by :func:`run_search`."""
    run_worker(Settings(**{**settings, "progress": False, "report": False}))


def run_search(settings: Settings) -> dict:
    """Run (or resume, or join) a search; return the report's summary."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    space, strategy, objective = _parts(settings)
    _check_input(space, objective)  # a bad --data fails here, before any worker starts
    store = open_store(settings, space, strategy, objective)
    log = EventLog(out / "events.jsonl")
    log("search_start", settings=settings.__dict__, budget=store.budget, done=len(store.done_slots()))
    procs = []
    if settings.workers > 1:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        for _ in range(settings.workers - 1):
            p = ctx.Process(target=worker_main, args=(dict(settings.__dict__),), daemon=False)
            p.start()
            procs.append(p)
    progress = Progress(store.budget, settings.progress)
    progress.update(len(store.done_slots()), None, "starting")
    try:
        run_worker(settings, store, progress)
    finally:
        for p in procs:
            p.join()
        progress.close()
    log("search_end", done=len(store.done_slots()))
    summary = {"done": len(store.done_slots()), "budget": store.budget}
    if settings.report:
        from .report import write_report

        summary.update(write_report(store, space, out, multi_objective=objective.target_latency_ms is not None))
    return summary
