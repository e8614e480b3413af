"""The trial store (archzoo.search.store): slots, concurrency and taking over dead workers' trials,
with placeholder trials (no training)."""

import socket
import subprocess
import sys
import time

import pytest

from archzoo.search.report import best_so_far, pareto_front
from archzoo.search.store import TrialStore
from archzoo.validate import UserError

CONFIG = {"space": "test"}

WORKER = """
import os, sys, time
from archzoo.search.store import TrialStore
store = TrialStore(sys.argv[1], {"space": "test"})
if store.budget < int(sys.argv[2]):
    store.set_budget(int(sys.argv[2]))
while True:
    run = store.start()
    if run is None:
        if len(store.done_slots()) >= store.budget:
            break
        time.sleep(0.2)
        continue
    store.record_proposal(run, [run.slot], {})
    time.sleep(0.05)
    store.finish(run, {"pid": os.getpid()}, float(run.slot))
"""


def _urls(tmp_path):
    return {"sqlite": f"sqlite:///{tmp_path / 'search.db'}", "journal": f"journal:{tmp_path / 'journal.log'}"}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_several_worker_processes_run_every_slot_exactly_once(tmp_path, kind):
    url, n = _urls(tmp_path)[kind], 12
    TrialStore(url, CONFIG).set_budget(n)  # create the study first, as archzoo search does
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(n)], stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    store = TrialStore(url, CONFIG)
    complete = [t for t in store.trials() if t.state.name == "COMPLETE"]
    slots = sorted(t.user_attrs["slot"] for t in complete)
    assert slots == list(range(n))  # no slot lost, none run twice
    assert all(t.value == t.user_attrs["slot"] for t in complete)
    assert len({t.user_attrs["metrics"]["pid"] for t in complete}) >= 2  # really shared between processes


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_dead_workers_trial_is_requeued_with_its_slot_and_decisions(tmp_path):
    url = _urls(tmp_path)["sqlite"]
    first = TrialStore(url, CONFIG)
    first.set_budget(3)
    run = first.start()
    first.record_proposal(run, [7, 1], {"origin": "test"})
    first._stop_heartbeat()
    run.trial.set_user_attr("owner", {"host": socket.gethostname(), "pid": _dead_pid(), "started": None})
    other = TrialStore(url, CONFIG)  # another worker (a resumed search)
    assert other.reclaim_stale() == [0]
    assert other.reclaim_stale() == []  # once only
    again = other.start()
    assert (again.slot, again.decisions, again.meta, again.retried) == (0, [7, 1], {"origin": "test"}, True)
    other.finish(again, {}, 0.5)
    nxt = other.start()
    assert nxt.slot == 1 and not nxt.retried
    other.finish(nxt, {}, 0.25)
    old = next(t for t in other.trials() if t.number == run.trial.number)
    assert old.state.name == "FAIL" and old.user_attrs["stale"]
    assert sorted(other.done_slots()) == [0, 1]


def test_a_live_worker_is_left_alone_and_a_silent_remote_one_is_taken_over(tmp_path):
    url = _urls(tmp_path)["journal"]
    store = TrialStore(url, CONFIG, stale_after=60)
    store.set_budget(2)
    mine = store.start()  # alive: this process
    other = TrialStore(url, CONFIG, stale_after=60)
    assert other.reclaim_stale() == []
    mine.trial.set_user_attr("owner", {"host": "elsewhere", "pid": 1})
    store._stop_heartbeat()
    mine.trial.set_user_attr("heartbeat", time.time() - 30)
    assert other.reclaim_stale() == []  # another host, heartbeat recent enough
    mine.trial.set_user_attr("heartbeat", time.time() - 120)
    assert other.reclaim_stale() == [0]


def test_failed_and_infeasible_trials_end_their_slot(tmp_path):
    store = TrialStore(_urls(tmp_path)["sqlite"], CONFIG)
    store.set_budget(3)
    for score, error in ((None, None), (None, "RuntimeError: too small"), (0.5, None)):
        run = store.start()
        store.record_proposal(run, [run.slot], {})
        store.finish(run, {}, score, error)
    assert store.start() is None
    assert [t.state.name for t in store.done()] == ["PRUNED", "FAIL", "COMPLETE"]
    assert [f.score for f in store.finished()] == [None, None, 0.5]


def test_a_store_refuses_a_search_with_other_settings(tmp_path):
    url = _urls(tmp_path)["sqlite"]
    TrialStore(url, {"space": "cells", "seed": 0})
    with pytest.raises(UserError, match="other settings.*seed"):
        TrialStore(url, {"space": "cells", "seed": 1})
    with pytest.raises(UserError, match="--storage"):
        TrialStore("not a url", CONFIG)


def test_pareto_front_and_best_so_far():
    pts = [{"accuracy": 0.9, "latency_ms": 10}, {"accuracy": 0.8, "latency_ms": 5}, {"accuracy": 0.7, "latency_ms": 6},
           {"accuracy": 0.95, "latency_ms": 20}, {"accuracy": 0.9, "latency_ms": 12}]
    assert pareto_front(pts) == [0, 1, 3]
    assert best_so_far([0.1, None, 0.3, 0.2]) == [0.1, 0.1, 0.3, 0.3]
