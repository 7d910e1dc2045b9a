# make demo: set up .venv and run every task of the bundled model (kinema/pretrained/moving-digits).
# make test: set up .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch that lies on this class of machine; GPU users: see README.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo demo-train test test-slow test-browser bench-env setup clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -q -e ".[test]"
	touch $@

setup: $(VENV)/.base

# text -> video, prediction, interpolation, animation and audio -> motion from the shipped model, offline
demo: $(VENV)/.base
	$(VENV)/bin/kinema demo --model moving-digits --out outputs/demo

# train a small model from scratch on the built-in moving digits (a few minutes), then sample it
demo-train: $(VENV)/.base
	# a second run continues the first (nothing is deleted; kinema train refuses to start over a run's checkpoints)
	$(VENV)/bin/kinema train --config configs/demo.yaml --out runs/demo $$(test -d runs/demo/checkpoints && echo --resume)
	$(VENV)/bin/kinema sample --model runs/demo --num 8 --sampler ddim --steps 50 --out outputs/demo-train
	@echo "videos: outputs/demo-train/ (sample_*.mp4, sample_*.gif, grid.mp4); loss plot: runs/demo/loss.png"

test: $(VENV)/.test
	$(PY) -m pytest -q

$(VENV)/.browser: $(VENV)/.test
	$(PIP) install -q -e ".[ui,browser]"
	command -v chromium >/dev/null 2>&1 || (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null
	touch $@

# kinema serve driven by headless Chromium; screenshots land in outputs/browser/
test-browser: $(VENV)/.browser
	$(PY) -m pytest -q -m browser tests/browser tests/test_serve_loopback.py

# the peers of benchmarks/peers.py live in their own environment, never in kinema's dependencies:
# lucidrains' Unet3D and torchvision without their pins (torchvision's operators are declared by the script)
bench-env:
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q "$(TORCH_PIN)"
	.venv-bench/bin/python -m pip install -q -e ".[test]"
	.venv-bench/bin/python -m pip install -q --no-deps video-diffusion-pytorch==0.7.0 einops-exts rotary-embedding-torch torchvision

test-slow: $(VENV)/.test
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs/demo outputs/demo outputs/demo-train
