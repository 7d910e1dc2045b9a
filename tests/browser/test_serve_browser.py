"""`kinema serve` in a real browser: headless Debian Chromium driven by Playwright (no browser download).

Run with `make test-browser` (CI does): it needs `pip install -e '.[ui,browser]'` and Debian's chromium.
A tiny text-conditioned model is trained for one step, served on loopback, and the page is used the
way a person would: type a prompt, press Generate, wait for the video, check it plays.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("KINEMA_BROWSER_ARTIFACTS", Path(__file__).resolve().parents[2] / "outputs" / "browser"))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kinema serve exited with {proc.returncode}: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory):
    """A 1-step text- and path-conditioned model directory (the page only needs a model that answers)."""
    from kinema.config import load_config
    from kinema.training import Trainer

    out = tmp_path_factory.mktemp("tiny-run")
    cfg = load_config(None, {
        "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
        "model.norm_groups": 4, "model.spatial_attention_levels": [1], "model.cond_dim": 16,
        "model.frame_conditioning": True, "diffusion.num_steps": 100, "data.size": 24, "data.num_frames": 4,
        "data.length": 16, "cond.text": "gru", "cond.trajectory": "heatmap", "train.steps": 1, "train.batch_size": 2,
        "train.sample_every": 0, "train.checkpoint_every": 1})
    Trainer(cfg, out).fit()
    return out / "model"


@pytest.fixture(scope="module")
def server(tiny_text_model):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "kinema.cli", "serve", "--model", str(tiny_text_model),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[browser]'")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (make test-browser does)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def test_prompt_to_playable_video(server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server)
    page.locator("#prompt textarea").fill("digit 7 moving left")
    page.locator("#generate").click()
    video = page.locator("#result video")
    video.wait_for(state="attached", timeout=120_000)
    src = video.get_attribute("src")
    assert src, "the result video has no source"
    # the browser loads the clip: metadata with a real duration and a decodable first frame
    page.wait_for_function("() => { const v = document.querySelector('#result video');"
                           " return v && v.readyState >= 2 && v.duration > 0; }", timeout=60_000)
    duration = page.evaluate("() => document.querySelector('#result video').duration")
    page.screenshot(path=str(ARTIFACTS / "serve.png"), full_page=True)
    assert duration > 0
    with urllib.request.urlopen(page.evaluate("() => document.querySelector('#result video').currentSrc")) as r:
        assert r.status == 200 and len(r.read()) > 1000


def test_a_path_laid_by_clicks_gives_a_playable_clip(server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(server)
    canvas = page.locator("#path-canvas img")
    canvas.wait_for(state="visible", timeout=60_000)
    box = canvas.bounding_box()
    for n, (fx, fy) in enumerate(((0.2, 0.2), (0.8, 0.2), (0.8, 0.8)), start=1):  # right along the top, then down
        canvas.click(position={"x": fx * box["width"], "y": fy * box["height"]})
        page.wait_for_function(f"() => {{ const v = document.querySelector('#path textarea').value;"
                               f" return v && v.split(';').length === {n}; }}", timeout=30_000)
        page.locator("#path-canvas [data-testid='status-tracker'].pending").wait_for(state="detached",
                                                                                      timeout=30_000)
    points = [tuple(map(float, p.split(","))) for p in page.locator("#path textarea").input_value().split(";")]
    for (x, y), (fx, fy) in zip(points, ((0.2, 0.2), (0.8, 0.2), (0.8, 0.8))):
        assert abs(x - fx) < 0.05 and abs(y - fy) < 0.05, points  # where the clicks landed on the frame
    page.locator("#prompt textarea").fill("digit 4 moving right")
    page.locator("#generate").click()
    page.wait_for_function("() => { const v = document.querySelector('#result video');"
                           " return v && v.readyState >= 2 && v.duration > 0; }", timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "serve-path.png"), full_page=True)


def test_two_users_are_queued_not_crashed(server, browser):
    pages = [browser.new_page() for _ in range(2)]
    for i, page in enumerate(pages):
        page.goto(server)
        page.locator("#prompt textarea").fill(f"digit {i} moving up")
    for page in pages:
        page.locator("#generate").click()
    for page in pages:
        page.locator("#result video").wait_for(state="attached", timeout=180_000)
        assert page.locator("#result video").get_attribute("src")


def test_contact_sheet_renders(tmp_path, browser):
    """The demo's index.html, written by the bundled model, opens from disk and shows every clip and input."""
    from kinema.demo import run_demo

    summary = run_demo("moving-digits", tmp_path, steps=2, progress=False)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((tmp_path / "index.html").as_uri())
    assert page.locator("figure").count() == len(summary["clips"]) >= 5
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("img.clip").count() == len(summary["clips"])
    assert "digit 3 moving right" in page.inner_text("main")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
