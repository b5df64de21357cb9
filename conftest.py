"""Test-session setup and fixtures shared by common/tests and days/*/test_*.py.

Under pytest-xdist each worker is its own process; with Torch's default of one thread per core,
two workers on two cores would run four busy threads and spin against each other (a 3-5x
slowdown). So each worker, and every process it starts, gets one thread, and every test runs
with one Torch thread (tiny tensors gain nothing from a second one).
"""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def missing_data(message: str) -> None:
    """A dataset is not on DATA_DIR: skip with what the learner can do, or fail when CI demands data."""
    if os.environ.get("REQUIRE_DATA") == "1":
        pytest.fail(f"{message} (DATA_DIR={os.environ.get('DATA_DIR')})")
    pytest.skip(f"{message} (fetch it with `make data`, or point DATA_DIR at a folder "
                "that holds it)")


def need_data(name: str, file: str | None = None) -> None:
    """Skip when a dataset is not on DATA_DIR; fail instead when CI demands the data (REQUIRE_DATA=1)."""
    from common import data

    if not data.available(name, file):
        missing_data(f"dataset {name}{'/' + file if file else ''} is not on DATA_DIR")


@pytest.fixture
def require_data():
    """`require_data("tinyshakespeare")` inside a test: see `need_data`."""
    return need_data
