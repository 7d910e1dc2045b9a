"""`kinema serve` on loopback, driven over plain HTTP the way a careless or hostile client would.

A tiny random text-conditioned model is served in this process (`serve(..., block=False)`), with
gradio's cache and the temp directory pointed into the test's own folder. The requests: an upload
above the size limit, a 720p 150-frame video as context and as end clip, frames × steps above the
budget, NaN guidance, a seed out of range, a client that disconnects mid-job, then a normal request,
which must be served in about its own sampling time (the gone client's job stopped). After shutdown
no file of the server's is left, also when `kinema serve` is stopped by SIGTERM.

Needs the `ui` extra (gradio, which brings httpx), like the browser test: run with `-m browser`.
"""

import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

from kinema.config import load_config
from kinema.models import SpaceTimeUNet
from kinema.models.encoders import Conditioner, Tokenizer
from kinema.models.model_dir import save_model_dir
from kinema.models.model_dir import video_model_config

pytestmark = pytest.mark.browser

TINY = {"model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
        "model.norm_groups": 4, "model.spatial_attention_levels": [1], "diffusion.num_steps": 100,
        "data.size": 24, "data.num_frames": 4, "model.frame_conditioning": True, "model.cond_dim": 16,
        "cond.text": "gru", "cond.max_tokens": 8}
WINDOW, SIZE = 4, 24
MAX_COST = 4 * WINDOW * 100 * SIZE ** 2  # 16 frames at 100 steps; the form's sliders allow 32 at 100
UPLOAD_LIMIT = 1_000_000  # bytes
FORM = {"task": "generate", "prompt": "digit 1 moving left", "negative": "", "image": None, "audio": None,
        "video": None, "sampler": "dpmpp_2m", "steps": 10, "guidance": 3.0, "audio_guidance": 2.0, "seed": 0,
        "frames": WINDOW, "cache_interval": 1, "path": "", "path_guidance": 3.0, "frame_guidance": 3.0}


def _tiny_model_dir(out):
    """A random text-conditioned model directory with frame conditioning (the page needs a model that answers)."""
    config = load_config(None, TINY)
    torch.manual_seed(0)
    tokenizer = Tokenizer.build(["digit 1 moving left", "digit 2 moving up"])
    conditioner = Conditioner(config.cond, config.model.cond_dim, in_channels=1, tokenizer=tokenizer)
    return save_model_dir(out, SpaceTimeUNet(config.model), video_model_config(config, fps=8.0),
                          extra={"conditioner": conditioner}, vocab=tokenizer.words)


def _big_video(path, width=1280, height=720, frames=150):
    """A clip small on disk (flat frames, ~100 kB) but 415 MB as uint8 frames and 1.6 GB as float."""
    import av

    with av.open(str(path), "w") as f:
        stream = f.add_stream("libx264", rate=30, options={"preset": "ultrafast", "crf": "40"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            pixels = np.full((height, width, 3), (i * 8) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                f.mux(packet)
        for packet in stream.encode():
            f.mux(packet)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """The page's HTTP API as the browser speaks it: /upload, /queue/join, then the session's event stream."""

    def __init__(self, url: str):
        import httpx  # comes with gradio

        self.httpx, self.api = httpx, f"{url}gradio_api"

    def wait(self, proc: subprocess.Popen, timeout: float = 120) -> None:
        """Wait until the page answers; fail with the server's output if it exits first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert proc.poll() is None, f"kinema serve exited with {proc.returncode}: {proc.stdout.read()[-2000:]}"
            try:
                if self.httpx.get(self.api.removesuffix("gradio_api"), timeout=2).status_code == 200:
                    return
            except self.httpx.TransportError:
                time.sleep(0.3)
        raise TimeoutError(f"kinema serve did not answer in {timeout} s")

    def upload(self, path):
        """POST a file; the response lists the server's paths."""
        with open(path, "rb") as f:
            return self.httpx.post(f"{self.api}/upload", files=[("files", (path.name, f))], timeout=60)

    def file(self, path) -> dict:
        """Upload a file and return the form value that names it."""
        r = self.upload(path)
        assert r.status_code == 200, r.text
        return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def join(self, session: str, **form) -> None:
        """Queue one request of the form (NaN and inf go as the JavaScript literals, as a hand-made request may)."""
        body = {"data": list({**FORM, **form}.values()), "fn_index": 0, "session_hash": session, "event_data": None}
        r = self.httpx.post(f"{self.api}/queue/join", content=json.dumps(body),
                            headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text

    def messages(self, session: str, client):
        """The session's event stream, one message dict at a time."""
        with client.stream("GET", f"{self.api}/queue/data", params={"session_hash": session}, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])

    def request(self, **form) -> tuple[bool, object, float]:
        """Send one request and wait for it: (success, output data or error message, seconds)."""
        session, start = uuid.uuid4().hex, time.perf_counter()
        with self.httpx.Client() as client:
            self.join(session, **form)
            for msg in self.messages(session, client):
                if msg["msg"] == "process_completed":
                    out = msg["output"]
                    return msg["success"], out.get("data") if msg["success"] else out.get("error"), \
                        time.perf_counter() - start
        raise AssertionError("the event stream ended without a result")

    def leave_mid_job(self, **form) -> None:
        """Queue a request, wait until it is sampling, and close the connection (a closed tab)."""
        session = uuid.uuid4().hex
        with self.httpx.Client() as client:
            self.join(session, **form)
            for msg in self.messages(session, client):
                assert msg["msg"] != "process_completed", msg
                if msg["msg"] == "progress":
                    return


# ---- the scenario ----


def _refused_before_any_work(page: Page, tmp_path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 2 * UPLOAD_LIMIT, np.uint8).tobytes())
    r = page.upload(junk)
    assert r.status_code == 413, (r.status_code, r.text)  # gradio itself refuses, before storing it

    ok, out, seconds = page.request(frames=32, steps=100)
    assert not ok and "frames × steps × size² = 32 × 100 × 24²" in out and f"{MAX_COST:,}" in out, out
    assert seconds < 5, f"a refused request took {seconds:.1f} s"
    for field, name in (("guidance", "guidance"), ("audio_guidance", "audio guidance")):
        ok, out, _ = page.request(**{field: math.nan})
        assert not ok and f"{name} must be a finite number, got nan" in out, out
    ok, out, _ = page.request(prompt="digit " * 100)
    assert not ok and "600 characters; at most 500" in out, out
    for form in ({"guidance": -math.inf}, {"seed": math.nan}, {"seed": 2**70}):  # gradio's own bounds
        ok, out, _ = page.request(**form)
        assert not ok, (form, out)


def _big_video_is_decoded_small(page: Page, tmp_path) -> None:
    video = page.file(_big_video(tmp_path / "big.mp4"))
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(tmp_path / "first.png")
    image = page.file(tmp_path / "first.png")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, this process: the server runs in it
    for form in ({"task": "predict", "video": video}, {"task": "interpolate", "video": video, "image": image}):
        ok, out, _ = page.request(frames=6, **form)
        assert ok, (form["task"], out)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < 200, f"peak memory grew by {grown:.0f} MB for a 720p video (415 MB as uint8 frames)"


def test_bad_requests_are_refused_and_a_gone_client_frees_the_queue(tmp_path):
    from kinema.serve import serve

    model_dir = _tiny_model_dir(tmp_path / "model")
    temp, cache = tmp_path / "tmp", tmp_path / "gradio"
    temp.mkdir()
    port = _free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(cache))  # gradio's cache and the temp dir: this test's own folders
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.setattr(tempfile, "tempdir", str(temp))
        app = serve(str(model_dir), port=port, block=False, max_cost=MAX_COST, max_file_size=UPLOAD_LIMIT)
        try:
            page = Page(f"http://127.0.0.1:{port}/")
            for _ in range(2):  # the first request pays for warm-up
                ok, out, alone = page.request()
                assert ok, out
            _refused_before_any_work(page, tmp_path)
            _big_video_is_decoded_small(page, tmp_path)

            # 16 frames at 100 steps: 5 windows × 100 steps, ~50 times the 10-step request
            page.leave_mid_job(frames=16, steps=100)
            gone = time.perf_counter()
            ok, out, _ = page.request()
            waited = time.perf_counter() - gone
            assert ok, out
        finally:
            app.close()
    print(f"a 10-step request alone {alone:.2f} s; right after a client left a 500-step job {waited:.2f} s")
    assert waited < 3 * alone + 3, f"the gone client's job held the queue: {waited:.1f} s vs {alone:.1f} s alone"
    assert list(temp.iterdir()) == [], "temp files left behind"
    assert [p for p in cache.rglob("*") if p.is_file()] == [], "gradio cache files left behind"


def test_kinema_serve_stopped_by_sigterm_leaves_no_files(tmp_path):
    """SIGTERM (how systemd, docker and `kill` stop a server) shuts down as Ctrl-C does, so gradio deletes
    the run's uploads and clips; killed outright, they would stay in its cache."""
    model_dir = _tiny_model_dir(tmp_path / "model")
    temp, cache = tmp_path / "tmp", tmp_path / "gradio"
    temp.mkdir()
    port = _free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "TMPDIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kinema.cli", "serve", "--model", str(model_dir), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        page = Page(f"http://127.0.0.1:{port}/")
        page.wait(proc)
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "first.png")
        ok, out, _ = page.request(task="animate", image=page.file(tmp_path / "first.png"))
        assert ok, out
        assert len([p for p in cache.rglob("*") if p.is_file()]) == 2  # the upload and the clip
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, proc.stdout.read()[-2000:]
    assert list(temp.iterdir()) == [], "temp files left behind"
    assert [p for p in cache.rglob("*") if p.is_file()] == [], "gradio cache files left behind"
