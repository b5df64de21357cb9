"""Shared fixtures for the tests of common/."""

import os

import pytest

from common import data


@pytest.fixture
def require_data():
    """Skip a test whose dataset is not on DATA_DIR, unless CI demands the data (REQUIRE_DATA=1)."""
    def need(name, file=None):
        if not data.available(name, file):
            if os.environ.get("REQUIRE_DATA") == "1":
                pytest.fail(f"dataset {name}/{file or ''} missing from DATA_DIR={os.environ.get('DATA_DIR')}")
            pytest.skip(f"dataset {name} not on DATA_DIR (set DATA_DIR to ../shared/data or download it)")
    return need


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from a second thread, and lose a lot when the cores are busy."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
