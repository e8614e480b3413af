import os
import sys

import pytest
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


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: tiny networks, transforms and per-region convolutions run
    several times faster without OpenMP hand-offs, more so on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_report_header(config):
    from helpers import SHARED_DATA

    state = "present" if SHARED_DATA.is_dir() else "missing"
    mode = "CI=true: tests needing it fail" if in_ci() else "tests needing it skip"
    return f"archzoo: real data {SHARED_DATA} {state} ({mode} when it is missing)"
