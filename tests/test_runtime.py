"""kinema.runtime: malloc keeps freed memory, so repeated large allocations stop faulting pages in."""

import platform
import subprocess
import sys

import pytest

from kinema import cli, runtime

CHURN = """
import sys, torch
from kinema import runtime
if sys.argv[1] == "keep":
    assert runtime.keep_freed_memory()
def churn():  # what a training step does: large tensors made, used and freed
    x = torch.ones(16 * 2**20)  # 64 MiB
    y = x * 2
    del x, y
for _ in range(10):
    churn()
before = runtime.minor_page_faults()
for _ in range(20):
    churn()
print((runtime.minor_page_faults() - before) / 20)
"""
PAGES = 2 * 64 * 2**20 // 4096  # pages of the two tensors of one churn


def faults_per_churn(mode: str) -> float:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* settings inherited
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, env=env, check=True)
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    assert faults_per_churn("default") > PAGES / 4  # glibc maps large blocks afresh each time
    assert faults_per_churn("keep") < PAGES / 10  # the heap may still settle: a block now and then


def test_other_systems_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert runtime.keep_freed_memory() is False


@pytest.mark.parametrize("argv, env, applied", [(None, None, True), (None, "system", False),
                                                (["data", "inspect", "/no/such/dir"], None, False)])
def test_the_command_line_applies_it_unless_told_not_to(monkeypatch, argv, env, applied):
    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(sys, "argv", ["kinema", "data", "inspect", "/no/such/dir"])
    if env:
        monkeypatch.setenv("KINEMA_MALLOC", env)
    else:
        monkeypatch.delenv("KINEMA_MALLOC", raising=False)
    assert cli.main(argv) == 2  # the missing directory: a usage error either way
    assert bool(calls) == applied
