"""The peer benchmark's allocator-independent memory figure: bytes of live tensor storages at their peak."""

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location(
    "peers", Path(__file__).resolve().parent.parent / "benchmarks" / "peers.py")
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)


def test_tensor_bytes_counts_storages_once_and_frees_them_with_their_last_view():
    with peers.TensorBytes() as tb:
        a = torch.ones(1000)  # 4000 bytes
        doubled = a[::2] * 2  # +2000
        del doubled  # -2000
        b = torch.ones(2000)  # +8000: 12000 alive, the peak
        head = b[:10]  # a view: no new storage
        del a, b  # a's storage goes; b's stays alive through its view
        assert tb.now == 8000
        del head
    assert (tb.peak, tb.now) == (12000, 0)


def test_tensor_bytes_sees_the_backward_pass():
    x = torch.randn(64, 64, requires_grad=True)
    with peers.TensorBytes() as tb:
        x.exp().sum().backward()  # exp saves its output (16 KiB) for backward, alive beside the gradient (16 KiB)
    assert tb.peak >= 2 * x.nbytes and tb.now == x.grad.nbytes


def test_tensor_bytes_of_shared_storage_counts_it_once():
    w = torch.zeros(10, 10)
    assert peers.tensor_bytes(w, w[0], w.t()) == 400
    assert peers.tensor_bytes(w, torch.zeros(5)) == 420
