"""The trial store: one Optuna study (SQLite by default, any SQLAlchemy URL, or a journal file)
shared by every worker of a search. Optuna is used as a database with atomic trial numbers and
a queue, not for its samplers: archzoo's strategies propose, the store records.

Design (see docs/search.md):

* A search has a budget of ``trials`` *slots* 0..N-1. A fresh trial (``study.ask()``) takes the
  slot equal to the number of fresh trials numbered before it — trial numbers are assigned
  atomically by the storage, so no two fresh trials share a slot; one past the budget (two
  workers asking at once) is closed as ``surplus``.
* A trial records in its user attributes its slot, the decisions, the strategy's notes, its
  owner (host, process id and start time) and a heartbeat; when it ends, its metrics. It is
  ``COMPLETE`` (scored), ``PRUNED`` (infeasible: a constraint failed) or ``FAIL`` with an
  ``error`` (the architecture could not be trained) — each of these ends its slot.
* A ``RUNNING`` trial whose owner died (a process of this host that no longer exists, or no
  heartbeat for ``stale_after`` seconds) is closed as ``FAIL``/``stale`` and re-queued with
  ``study.enqueue_trial`` carrying its slot and decisions; the next ``ask`` of any worker takes
  it over. So a SIGKILLed search loses no slot and repeats none; if two workers re-queue the
  same slot, the later copy notices the earlier and closes itself as ``duplicate``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..validate import UserError
from .strategies import Finished

STUDY = "archzoo-search"
ENDS_SLOT = ("COMPLETE", "PRUNED")


def open_storage(url: str):
    """An Optuna storage: ``journal:PATH`` (a journal file), else a SQLAlchemy URL (``sqlite:///x.db``,
    ``postgresql://...``)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):]).expanduser()
        if not path.parent.is_dir():
            raise UserError(f"--storage {url}: folder {path.parent} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise UserError(f"--storage must be a SQLAlchemy URL (sqlite:///search.db, postgresql://user@host/db) "
                        f"or journal:FILE, got {url!r}")
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # a bad URL, a missing driver, an unreachable server
        raise UserError(f"--storage {url}: cannot open it: {e}") from None


def _start_time(pid: int) -> str | None:
    """A process's start time (Linux ``/proc``), so a reused process id is not mistaken for the owner."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def _alive(owner: dict) -> bool | None:
    """Whether a trial's owner process lives: ``None`` when it ran on another host (unknowable here)."""
    if owner.get("host") != socket.gethostname():
        return None
    pid = owner.get("pid")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError):
        return True
    return owner.get("started") is None or _start_time(pid) == owner.get("started")


@dataclass
class Running:
    """A trial this worker runs: its Optuna trial, slot, decisions and notes."""

    trial: object
    slot: int
    decisions: list[int] | None
    meta: dict
    retried: bool = False


class TrialStore:
    """A search's trials in an Optuna study; ``config`` (JSON) must match the study's, if it has one."""

    def __init__(self, url: str, config: dict, study: str = STUDY, stale_after: float = 300.0,
                 heartbeat: float = 10.0):
        import optuna

        self.url, self.stale_after, self.heartbeat = url, stale_after, heartbeat
        self.storage = open_storage(url)
        self.study = optuna.create_study(storage=self.storage, study_name=study, direction="maximize",
                                         load_if_exists=True, sampler=optuna.samplers.RandomSampler(seed=0))
        saved = self.study.user_attrs.get("config")
        if saved is None:
            self.study.set_user_attr("config", config)
        elif json.loads(json.dumps(saved)) != json.loads(json.dumps(config)):
            diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
            raise UserError(f"the store {url} holds a search with other settings ({', '.join(diff)}: "
                            f"{ {k: saved.get(k) for k in diff} }); give the same options, or another --out/--storage")
        self._beat: tuple[threading.Event, threading.Thread] | None = None
        self._running: dict[int, Running] = {}

    # --- reading -----------------------------------------------------------------------------

    @property
    def budget(self) -> int:
        return int(self.study.user_attrs.get("trials", 0))

    def set_budget(self, trials: int) -> None:
        """The number of slots; a resumed search may raise it (never lower it below what is done)."""
        if trials != self.budget:
            self.study.set_user_attr("trials", max(int(trials), len(self.done_slots())))

    def trials(self):
        return self.study.get_trials(deepcopy=False)

    @staticmethod
    def ends_slot(t) -> bool:
        return t.state.name in ENDS_SLOT or (t.state.name == "FAIL" and "error" in t.user_attrs)

    def done(self) -> list:
        """Trials that ended their slot, by slot (one per slot)."""
        out = {t.user_attrs["slot"]: t for t in self.trials() if self.ends_slot(t) and "slot" in t.user_attrs}
        return [out[s] for s in sorted(out)]

    def done_slots(self) -> set[int]:
        return {t.user_attrs["slot"] for t in self.done()}

    def finished(self) -> list[Finished]:
        """The done trials as strategies see them."""
        return [Finished(t.user_attrs["slot"], list(t.user_attrs.get("decisions") or []),
                         t.value if t.state.name == "COMPLETE" else None, dict(t.user_attrs.get("meta") or {}))
                for t in self.done() if t.user_attrs.get("decisions")]

    def pending(self, but=None) -> list[list[int]]:
        return [list(t.user_attrs["decisions"]) for t in self.trials()
                if t.state.name == "RUNNING" and t.user_attrs.get("decisions") and t.number != but]

    # --- running -----------------------------------------------------------------------------

    def reclaim_stale(self) -> list[int]:
        """Close running trials whose owner died and queue their slots again; return those slots."""
        from optuna.trial import TrialState

        slots = []
        now = time.time()
        for t in self.trials():
            if t.state != TrialState.RUNNING or t.number in self._mine():
                continue
            owner = t.user_attrs.get("owner") or {}
            alive = _alive(owner) if owner else None
            beat = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
            if alive is False or (alive is None and now - beat > self.stale_after):
                try:
                    self.storage.set_trial_user_attr(t._trial_id, "stale", True)
                    if not self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                        continue
                except Exception:  # another worker closed it first
                    continue
                if "slot" in t.user_attrs:
                    attrs = {k: t.user_attrs[k] for k in ("slot", "decisions", "meta") if k in t.user_attrs}
                    self.study.enqueue_trial({}, user_attrs={**attrs, "retry_of": t.number})
                    slots.append(t.user_attrs["slot"])
        return slots

    def _duplicate(self, number: int, slot: int) -> bool:
        """Another trial holds ``slot``: it ended it, or it is an earlier copy still queued or running."""
        for t in self.trials():
            if t.number == number or t.user_attrs.get("slot") != slot:
                continue
            if self.ends_slot(t) or (t.state.name in ("RUNNING", "WAITING") and t.number < number):
                return True
        return False

    def _mine(self) -> set[int]:
        return set(self._running)

    def start(self) -> Running | None:
        """Take the next slot (a re-queued one first); ``None`` when every slot is done or running."""
        trials = self.trials()
        busy = {t.user_attrs.get("slot") for t in trials
                if (self.ends_slot(t) or t.state.name == "RUNNING") and "slot" in t.user_attrs}
        fresh_taken = sum(1 for t in trials if "retry_of" not in t.user_attrs)
        waiting = any(t.state.name == "WAITING" for t in trials)
        if not waiting and (fresh_taken >= self.budget or len(busy) >= self.budget):
            return None
        trial = self.study.ask()
        attrs = dict(trial.user_attrs)
        if "retry_of" in attrs:
            slot = attrs["slot"]
            if self._duplicate(trial.number, slot):  # re-queued twice (two workers reclaimed it at once)
                trial.set_user_attr("duplicate", True)
                self.study.tell(trial, state=_state("FAIL"))
                return self.start()
            running = Running(trial, slot, attrs.get("decisions"), dict(attrs.get("meta") or {}), retried=True)
        else:
            slot = sum(1 for t in self.trials() if t.number < trial.number and "retry_of" not in t.user_attrs)
            if slot >= self.budget:
                trial.set_user_attr("surplus", True)
                self.study.tell(trial, state=_state("FAIL"))
                return None
            running = Running(trial, slot, None, {})
        trial.set_user_attr("slot", slot)
        trial.set_user_attr("owner", _owner())
        trial.set_user_attr("heartbeat", time.time())
        self._running = {**self._running, trial.number: running}
        self._start_heartbeat()
        return running

    def record_proposal(self, run: Running, decisions: list[int], meta: dict) -> None:
        run.decisions, run.meta = list(decisions), dict(meta)
        run.trial.set_user_attr("decisions", run.decisions)
        run.trial.set_user_attr("meta", run.meta)

    def finish(self, run: Running, metrics: dict, score: float | None, error: str | None = None) -> None:
        """End the slot: scored (``COMPLETE``), infeasible (``score=None``: ``PRUNED``) or failed (``error``)."""
        run.trial.set_user_attr("metrics", metrics)
        if error is not None:
            run.trial.set_user_attr("error", error)
            self.study.tell(run.trial, state=_state("FAIL"))
        elif score is None:
            self.study.tell(run.trial, state=_state("PRUNED"))
        else:
            self.study.tell(run.trial, float(score))
        self._running = {k: v for k, v in self._running.items() if k != run.trial.number}
        if not self._running:
            self._stop_heartbeat()

    def _start_heartbeat(self) -> None:
        if self._beat is not None:
            return
        stop = threading.Event()

        def beat():
            while not stop.wait(self.heartbeat):
                for r in list(self._running.values()):
                    try:
                        r.trial.set_user_attr("heartbeat", time.time())
                    except Exception:  # finished meanwhile, or the store is briefly busy
                        pass

        thread = threading.Thread(target=beat, daemon=True, name="archzoo-search-heartbeat")
        thread.start()
        self._beat = (stop, thread)

    def _stop_heartbeat(self) -> None:
        if self._beat is not None:
            self._beat[0].set()
            self._beat[1].join()
            self._beat = None


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]
