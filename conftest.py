"""Test-session setup shared by common/tests and days/*/test_*.py.

Under pytest-xdist each worker is its own process; with Torch's default of one thread per core,
two workers on two cores would run four busy threads and spin against each other (a 3-5x
slowdown). So each worker, and every process it starts, gets one thread.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
