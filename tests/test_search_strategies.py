"""Search strategies (archzoo.search.strategies) on a synthetic objective: no training."""

import random
import statistics

import pytest

from archzoo.search.spaces import CellSpace
from archzoo.search.strategies import Finished, Surrogate, make_strategy

SPACE = CellSpace(blocks=2)


def zeros(d):
    """A synthetic score every strategy can climb: the fraction of decisions set to option 0."""
    return sum(x == 0 for x in d) / len(SPACE.choices)


def simulate(name, n, seed=0, **options):
    strategy = make_strategy(name, SPACE, seed, **options)
    history = []
    for i in range(n):
        d, meta = strategy.propose(i, history, [])
        SPACE.check(d)
        history.append(Finished(i, d, zeros(d), meta))
    return history


@pytest.mark.parametrize("name", ["random", "evolution", "rl"])
def test_proposals_are_a_function_of_seed_ordinal_and_history(name):
    a, b = simulate(name, 25, seed=3), simulate(name, 25, seed=3)
    assert [t.decisions for t in a] == [t.decisions for t in b]
    assert [t.decisions for t in simulate(name, 25, seed=4)] != [t.decisions for t in a]


def test_regularized_evolution_ages_its_population():
    strategy = make_strategy("evolution", SPACE, 0, population=5, sample=2)
    rng = random.Random(0)
    # the best architecture ever is the oldest: once it has aged out it is never a parent again
    history = [Finished(0, [0] * len(SPACE.choices), 1.0)]
    history += [Finished(i, SPACE.sample(rng), 0.1) for i in range(1, 12)]
    parents = set()
    for ordinal in range(12, 60):
        child, meta = strategy.propose(ordinal, history, [])
        parents.add(meta["parent"])
        parent = next(t for t in history if t.ordinal == meta["parent"])
        assert sum(x != y for x, y in zip(child, parent.decisions)) == 1
    assert parents <= {7, 8, 9, 10, 11}  # only the 5 youngest are alive
    young = strategy.propose(4, history[:4], [])  # fewer than P trials: random initial population
    assert young[1] == {"origin": "initial"}


def test_regularized_evolution_picks_the_best_of_its_sample():
    strategy = make_strategy("evolution", SPACE, 0, population=4, sample=4)  # S = P: always the best alive
    rng = random.Random(1)
    history = [Finished(i, SPACE.sample(rng), s) for i, s in enumerate([0.5, 0.9, 0.2, 0.3])]
    assert strategy.propose(4, history, [])[1]["parent"] == 1


def test_reinforce_moves_the_policy_towards_rewarded_choices():
    strategy = make_strategy("rl", SPACE, 0)
    d = [0] * len(SPACE.choices)
    history = [Finished(0, [1] * len(SPACE.choices), 0.2), Finished(1, d, 0.9)]
    logits = strategy.policy(history)
    assert all(row[0] == max(row) for row in logits)  # the rewarded choice is now the likeliest
    assert strategy.policy([]) == [[0.0] * c for c in SPACE.choices]


@pytest.mark.parametrize("name", ["evolution", "rl"])
def test_learning_strategies_improve_on_the_synthetic_objective(name):
    h = simulate(name, 80, seed=0, **({"population": 10, "sample": 3} if name == "evolution" else {}))
    first, last = statistics.mean(t.score for t in h[:20]), statistics.mean(t.score for t in h[-20:])
    rand = simulate("random", 80, seed=0)
    assert last > first + 0.1 and last > statistics.mean(t.score for t in rand[-20:]) + 0.1


def test_progressive_search_grows_one_level_per_round_and_never_repeats():
    h = simulate("pnas", 14, seed=0, beam=3, children=6)
    lengths = [len(t.decisions) for t in h]
    assert lengths == [8] * 3 + [16] * 3 + [16] * 8  # level 1, level 2 (= all blocks), then refinement
    assert len({tuple(t.decisions) for t in h}) == len(h)
    # a grown architecture extends one of the best finished architectures of the level before
    level1 = sorted(h[:3], key=lambda t: -t.score)
    assert all(t.decisions[:8] in [p.decisions for p in level1] for t in h[3:6])
    assert h[3].meta["origin"] == "surrogate"


def test_surrogate_ranks_unseen_architectures():
    rng = random.Random(0)
    train = [SPACE.sample(rng) for _ in range(60)]
    test = [SPACE.sample(rng) for _ in range(40)]
    s = Surrogate(SPACE, seed=0).fit([Finished(i, d, zeros(d)) for i, d in enumerate(train)])
    pred = s.predict(test)
    truth = [zeros(d) for d in test]
    rank = lambda v: [sorted(v).index(x) for x in v]
    rp, rt = rank(pred), rank(truth)
    n = len(test)
    mp, mt = sum(rp) / n, sum(rt) / n
    corr = sum((a - mp) * (b - mt) for a, b in zip(rp, rt)) / (
        sum((a - mp) ** 2 for a in rp) * sum((b - mt) ** 2 for b in rt)) ** 0.5
    assert corr > 0.6
    assert Surrogate(SPACE, 0).fit([]).predict(test[:2]) == [0.0, 0.0]


def test_bad_strategy_options_are_refused():
    with pytest.raises(ValueError, match="sample"):
        make_strategy("evolution", SPACE, 0, population=3, sample=5)
    with pytest.raises(ValueError, match="--strategy"):
        make_strategy("bayes", SPACE, 0)
