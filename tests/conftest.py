import os
import sys

import torch
from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/helpers.py

from helpers import in_ci  # noqa: E402

# Under pytest-xdist every worker is one process; one thread each avoids oversubscribing the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# CI runs the property tests on a fixed sequence of examples, so a red run reproduces; elsewhere they
# explore new random examples every time.
settings.register_profile("ci", derandomize=True, database=None)
if in_ci():
    settings.load_profile("ci")


def pytest_report_header(config):
    from helpers import SHARED_DATA

    state = "present" if SHARED_DATA.is_dir() else "missing"
    mode = "CI=true: tests needing it fail" if in_ci() else "tests needing it skip"
    return f"archzoo: real data {SHARED_DATA} {state} ({mode} when it is missing)"
