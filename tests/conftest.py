import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py

# Under pytest-xdist every worker is one process; one thread each avoids oversubscribing the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
