"""Architecture search over the zoo's own blocks (see docs/search.md).

:mod:`.spaces` (NASNet cells, MnasNet/EfficientNet block strings), :mod:`.strategies` (random,
regularized evolution, REINFORCE, PNAS), :mod:`.objectives` (proxy accuracy, cost, constraints,
MnasNet reward), :mod:`.store` (the Optuna-backed trial store shared by workers),
:mod:`.runner` (the worker loop) and :mod:`.report` (report.md and pictures).
"""

from .runner import Settings, run_search, run_worker
from .spaces import BlockSpace, CellSpace, make_space
from .strategies import make_strategy

__all__ = ["BlockSpace", "CellSpace", "Settings", "make_space", "make_strategy", "run_search", "run_worker"]
