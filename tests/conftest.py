"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps a process-wide singleton; each test may build its own Accelerator."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(autouse=True)
def one_thread():
    """Tests use small tensors: one intra-op thread is as fast, and it keeps OpenMP threads from
    stalling each other when another busy process shares the two cores (up to ~100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
