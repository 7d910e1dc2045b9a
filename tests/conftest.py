"""Shared test set-up."""

import pytest


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps a process-wide singleton; each test may build its own Accelerator."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
