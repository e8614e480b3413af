"""Search strategies, each a pure function of the finished trials: ask/tell over a shared store.

A strategy keeps no state of its own: :meth:`Strategy.propose` rebuilds whatever it needs (a
population, a policy, a surrogate) from the finished trials every time it is asked, and draws
its randomness from ``(seed, trial ordinal)``. So one worker with one seed makes the same
proposals every time, a resumed search continues where the store says it stopped, and workers
on other machines need nothing but the store.

* ``random`` — the baseline every NAS paper should beat.
* ``evolution`` — regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for
  Image Classifier Architecture Search", arXiv:1802.01548: the population is the ``population``
  most recently born trials (so the *oldest* dies, not the worst); a parent is the best of
  ``sample`` drawn at random from it, the child one mutation away.
* ``rl`` — REINFORCE, Zoph & Le 2017, "Neural Architecture Search with Reinforcement Learning",
  arXiv:1611.01578: a categorical policy per decision (logits, instead of the paper's LSTM),
  updated by ``lr * (reward - baseline) * grad log p(architecture)`` with a moving-average
  baseline, replayed over the finished trials in order.
* ``pnas`` — progressive search, Liu et al. 2018, "Progressive Neural Architecture Search",
  arXiv:1712.00559: architectures grow one level (a block per cell, a stage) at a time; children
  of the ``beam`` best of the last level are ranked by a surrogate (an ensemble of small MLPs on
  one-hot decisions, trained on every finished trial) and only the best are trained. After the
  last level it keeps ranking one-mutation neighbours of the best.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .spaces import Space


@dataclass
class Finished:
    """A finished trial as strategies see it: ``score`` is ``None`` for a failed or infeasible one."""

    ordinal: int
    decisions: list[int]
    score: float | None
    meta: dict = field(default_factory=dict)


def rng_for(seed: int, *keys) -> random.Random:
    """A generator seeded by ``seed`` and ``keys`` (string seeding is stable across runs and Pythons)."""
    return random.Random("/".join(str(k) for k in (seed, *keys)))


def _score(t: Finished) -> float:
    return -math.inf if t.score is None else t.score


class Strategy:
    name = ""

    def __init__(self, space: Space, seed: int = 0):
        self.space, self.seed = space, int(seed)

    def config(self) -> dict:
        return {"strategy": self.name}

    def propose(self, ordinal: int, history: list[Finished], pending: list[list[int]]) -> tuple[list[int], dict]:
        """Decisions (and notes kept with the trial) for trial ``ordinal`` given the finished
        trials (by ordinal) and the decisions of trials still running."""
        raise NotImplementedError


class RandomSearch(Strategy):
    name = "random"

    def propose(self, ordinal, history, pending):
        return self.space.sample(rng_for(self.seed, ordinal)), {}


class RegularizedEvolution(Strategy):
    name = "evolution"

    def __init__(self, space: Space, seed: int = 0, population: int = 10, sample: int = 3):
        super().__init__(space, seed)
        if not 1 <= sample <= population:
            raise ValueError(f"evolution needs 1 <= sample ({sample}) <= population ({population})")
        self.population, self.sample = int(population), int(sample)

    def config(self) -> dict:
        return {"strategy": self.name, "population": self.population, "sample": self.sample}

    def propose(self, ordinal, history, pending):
        rng = rng_for(self.seed, ordinal)
        if len(history) < self.population:
            return self.space.sample(rng), {"origin": "initial"}
        alive = sorted(history, key=lambda t: t.ordinal)[-self.population:]  # aging: the oldest have died
        parent = max(rng.sample(alive, self.sample), key=_score)
        return self.space.mutate(parent.decisions, rng), {"origin": "mutation", "parent": parent.ordinal}


class Reinforce(Strategy):
    name = "rl"

    def __init__(self, space: Space, seed: int = 0, lr: float = 2.0, baseline_decay: float = 0.9):
        super().__init__(space, seed)
        self.lr, self.decay = float(lr), float(baseline_decay)

    def config(self) -> dict:
        return {"strategy": self.name, "lr": self.lr, "baseline_decay": self.decay}

    def policy(self, history: list[Finished]) -> list[list[float]]:
        """The logits after replaying REINFORCE over ``history`` in order."""
        logits = [[0.0] * c for c in self.space.choices]
        baseline = None
        for t in sorted(history, key=lambda t: t.ordinal):
            if t.score is None or len(t.decisions) != len(logits):
                continue
            baseline = t.score if baseline is None else baseline
            advantage = t.score - baseline
            for row, a in zip(logits, t.decisions):
                probs = _softmax(row)
                for k in range(len(row)):  # d log p(a) / d logit_k = [k == a] - p_k
                    row[k] += self.lr * advantage * ((k == a) - probs[k])
            baseline = self.decay * baseline + (1 - self.decay) * t.score
        return logits

    def propose(self, ordinal, history, pending):
        rng = rng_for(self.seed, ordinal)
        return [_draw(_softmax(row), rng) for row in self.policy(history)], {}


def _softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def _draw(probs: list[float], rng: random.Random) -> int:
    u, acc = rng.random(), 0.0
    for k, p in enumerate(probs):
        acc += p
        if u < acc:
            return k
    return len(probs) - 1


class Progressive(Strategy):
    name = "pnas"

    def __init__(self, space: Space, seed: int = 0, beam: int = 4, children: int = 16):
        super().__init__(space, seed)
        self.beam, self.children = int(beam), int(children)

    def config(self) -> dict:
        return {"strategy": self.name, "beam": self.beam, "children": self.children}

    def propose(self, ordinal, history, pending):
        space, levels = self.space, self.space.levels
        level = min(ordinal // self.beam + 1, levels)
        rnd = ordinal // self.beam  # candidates are drawn once per round: a round's trials take its best in turn
        rng = rng_for(self.seed, "round", rnd)
        seen = {tuple(t.decisions) for t in history} | {tuple(p) for p in pending}
        if level == 1:
            return self._first_unseen([space.sample(rng, space.unit) for _ in range(self.beam * self.children)],
                                      seen, rng_for(self.seed, ordinal), level), {"level": level}
        grow = ordinal < levels * self.beam
        parent_len = (level - 1 if grow else level) * space.unit
        parents = sorted((t for t in history if len(t.decisions) == parent_len and t.score is not None),
                         key=lambda t: (-t.score, t.ordinal))[:self.beam]
        if not parents:  # nothing of the last level has finished yet (other workers): explore
            return space.sample(rng_for(self.seed, ordinal), level * space.unit), {"level": level, "origin": "random"}
        candidates = []
        for p in parents:
            for _ in range(self.children):
                if grow:
                    candidates.append(p.decisions + space.sample(rng, level * space.unit)[parent_len:])
                else:
                    candidates.append(space.mutate(p.decisions, rng))
        fresh = list({tuple(c): c for c in candidates if tuple(c) not in seen}.values())
        if not fresh:
            return space.sample(rng_for(self.seed, ordinal), level * space.unit), {"level": level, "origin": "random"}
        predicted = Surrogate(space, self.seed + rnd).fit(history).predict(fresh)
        best = max(range(len(fresh)), key=lambda i: predicted[i])
        return fresh[best], {"level": level, "origin": "surrogate", "predicted": round(predicted[best], 5)}

    def _first_unseen(self, candidates, seen, rng, level):
        for c in candidates:
            if tuple(c) not in seen:
                return c
        return self.space.sample(rng, level * self.space.unit)


class Surrogate:
    """An ensemble of three one-hidden-layer MLPs regressing the score on one-hot decisions
    (PNAS's MLP predictor), trained full-batch with Adam in NumPy (small and exactly repeatable);
    with fewer than two scored trials it predicts zeros."""

    def __init__(self, space: Space, seed: int, members: int = 3, hidden: int = 32, steps: int = 300,
                 lr: float = 1e-2, weight_decay: float = 1e-4):
        self.space, self.seed, self.members, self.hidden, self.steps = space, seed, members, hidden, steps
        self.lr, self.weight_decay = lr, weight_decay
        self.nets: list = []

    def fit(self, history: list[Finished]) -> Surrogate:
        import numpy as np

        scored = [t for t in history if t.score is not None]
        if len(scored) < 2:
            return self
        x = np.array([self.space.features(t.decisions) for t in scored])
        y = np.array([t.score for t in scored])
        self.mean, self.std = y.mean(), max(y.std(), 1e-6)
        y = (y - self.mean) / self.std
        n, d = x.shape
        for m in range(self.members):
            g = np.random.default_rng([self.seed, m])
            params = [g.standard_normal((d, self.hidden)) / math.sqrt(d), np.zeros(self.hidden),
                      g.standard_normal(self.hidden) / math.sqrt(self.hidden)]
            moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
            for step in range(1, self.steps + 1):
                w1, b1, w2 = params
                h = np.maximum(x @ w1 + b1, 0.0)
                err = 2.0 * (h @ w2 - y) / n  # d mean squared error / d prediction
                dh = np.outer(err, w2) * (h > 0)
                grads = [x.T @ dh, dh.sum(0), h.T @ err]
                for p, gr, mv in zip(params, grads, moments):  # Adam (Kingma & Ba 2015) with L2
                    gr = gr + self.weight_decay * p
                    mv[0] = 0.9 * mv[0] + 0.1 * gr
                    mv[1] = 0.999 * mv[1] + 0.001 * gr * gr
                    p -= self.lr * (mv[0] / (1 - 0.9 ** step)) / (np.sqrt(mv[1] / (1 - 0.999 ** step)) + 1e-8)
            self.nets.append(params)
        return self

    def predict(self, candidates: list[list[int]]) -> list[float]:
        import numpy as np

        if not self.nets:
            return [0.0] * len(candidates)
        x = np.array([self.space.features(c) for c in candidates])
        pred = np.mean([np.maximum(x @ w1 + b1, 0.0) @ w2 for w1, b1, w2 in self.nets], axis=0)
        return [float(v) for v in pred * self.std + self.mean]


STRATEGIES = {s.name: s for s in (RandomSearch, RegularizedEvolution, Reinforce, Progressive)}


def make_strategy(name: str, space: Space, seed: int = 0, **options) -> Strategy:
    from ..validate import UserError

    if name not in STRATEGIES:
        raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    return STRATEGIES[name](space, seed, **options)
