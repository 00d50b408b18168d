"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """
    One intra-op thread for a module's tests: tiny models run faster on one thread, and on a busy machine every
    parallel region of a second thread waits for a time slice. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
