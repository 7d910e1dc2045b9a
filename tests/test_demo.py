"""The bundled model loads by name, and `kinema demo` writes every task's clip and a contact sheet that links them."""

import json
import re
import subprocess
import sys

import pytest
import torch

from kinema.data import read_video
from kinema.diffusion.schedules import make_schedule
from kinema.models.model_dir import resolve_model_dir
from kinema.pipeline import VideoPipeline

TASKS = {"text → video", "prediction", "interpolation", "animation", "audio → motion"}


def test_bundled_model_loads_by_name_and_samples():
    path = resolve_model_dir("moving-digits")
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert sum(f.stat().st_size for f in path.iterdir()) < 50 * 2**20  # ships inside the package
    pipe = VideoPipeline.from_pretrained("moving-digits", device="cpu", precision="no")
    cc = pipe.conditioner.config
    assert pipe.model.config.frame_conditioning and cc.text != "none" and cc.image and cc.audio
    video = pipe(prompt=["digit 4 moving left"], steps=2, sampler="ddim", seed=0, progress=False)
    assert video.numpy().shape == (1, pipe.num_frames, pipe.size, pipe.size, 1)


def test_bundled_text_model_loads_with_its_shifted_schedule():
    pipe = VideoPipeline.from_pretrained("moving-digits-text", device="cpu", precision="no")
    assert pipe.diffusion.shift == 2.0 and pipe.conditioner.config.text == "gru"
    shifted = make_schedule(pipe.diffusion.schedule, pipe.diffusion.num_steps, shift=2.0)
    assert torch.equal(pipe.schedule.betas, shifted.betas)
    video = pipe(prompt=["digit 4 moving left"], guidance=3, steps=2, sampler="ddim", seed=0, progress=False)
    assert video.numpy().shape == (1, pipe.num_frames, pipe.size, pipe.size, 1)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "kinema.cli", "demo", "--model", "moving-digits", "--out", str(out),
                           "--steps", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(out) in done.stdout  # it says where the clips are
    return out


def test_demo_writes_every_task(demo_dir):
    summary = json.loads((demo_dir / "demo.json").read_text())
    assert {clip["task"] for clip in summary["clips"]} == TASKS
    num_frames = VideoPipeline.from_pretrained("moving-digits", device="cpu").num_frames
    for clip in summary["clips"]:
        video = read_video(demo_dir / clip["mp4"])  # uint8 (T, H, W, 3)
        assert video.shape[0] == num_frames, clip
        assert video.std() > 0, f"{clip['mp4']} is a flat clip"
        for name in [clip["gif"], *clip["inputs"]]:
            assert (demo_dir / name).stat().st_size > 0, name


def test_contact_sheet_links_only_files_that_exist(demo_dir):
    page = (demo_dir / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(links) >= 3 * 5  # every clip as gif + mp4, plus inputs
    for link in links:
        assert (demo_dir / link).is_file(), link
    for prompt in ("digit 3 moving right", "digit 7 moving up"):
        assert prompt in page
    assert len(set(links)) == len(links)  # no clip shown twice
