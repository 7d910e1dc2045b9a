"""I3D for FVD with random weights: the architecture's shapes and names, preprocessing, determinism, loading."""

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from kinema.evaluation.fvd import (
    FEATURE_SIZES,
    I3D,
    _same_pad,
    i3d_features,
    load_i3d,
    preprocess,
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return I3D().eval()


def test_the_reference_protocol_gives_400_logits_and_1024_pooled_features(net):
    video = torch.rand(1, 1, 16, 32, 32) * 2 - 1
    x = preprocess(video)
    assert x.shape == (1, 3, 16, 224, 224)
    with torch.no_grad():
        pool, logits = net(x)
    assert pool.shape == (1, FEATURE_SIZES["pool"]) and logits.shape == (1, FEATURE_SIZES["logits"])
    assert torch.isfinite(logits).all()


def test_forward_is_deterministic_and_independent_of_the_batch(net):
    video = torch.rand(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        a, b = net(video)[1], net(video)[1]
        alone = net(video[1:])[1]
    assert torch.equal(a, b)
    assert torch.allclose(a[1:], alone, atol=1e-4)
    assert not torch.allclose(a[0], a[1])  # two different clips, two different outputs
    feats = i3d_features(net, video, kind="pool", batch=1)
    assert feats.shape == (2, 1024) and feats.dtype.name == "float64"
    with pytest.raises(ValueError, match="'probs'"):
        i3d_features(net, video, kind="probs")


def test_parameter_names_follow_the_shared_state_dicts(net):
    names = set(net.state_dict())
    for key in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_2c_3x3.bn.running_var", "Mixed_3b.b1b.conv3d.weight",
                "Mixed_5c.b3b.bn.bias", "logits.conv3d.weight", "logits.conv3d.bias"):
        assert key in names, key
    assert net.state_dict()["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert net.state_dict()["Mixed_5c.b0.conv3d.weight"].shape == (384, 832, 1, 1, 1)


@pytest.mark.parametrize("size, kernel, stride", [(7, 3, 2), (8, 3, 2), (5, 2, 2), (15, 7, 2), (4, 3, 1)])
def test_same_padding_gives_ceil_of_size_over_stride(size, kernel, stride):
    x = torch.zeros(1, 1, size, size, size)
    padded = _same_pad(x, (kernel,) * 3, (stride,) * 3)
    out = torch.nn.functional.max_pool3d(padded, kernel, stride)
    assert out.shape[-1] == -(-size // stride)


def test_preprocess_takes_the_first_16_frames_in_range():
    video = torch.linspace(-1, 1, 20).reshape(1, 1, 20, 1, 1).expand(2, 1, 20, 8, 8)
    x = preprocess(video)
    assert x.shape == (2, 3, 16, 224, 224)
    assert torch.allclose(x[:, :, :, 100, 100], video[:, :, :16, 0, 0].expand(-1, 3, -1))  # constant frames stay
    assert preprocess(video[:, :, :8]).shape[2] == 8  # shorter clips keep their length (the report says so)
    with pytest.raises(ValueError, match=r"\(2, 2, 20, 8, 8\)"):
        preprocess(torch.zeros(2, 2, 20, 8, 8))


def _small_i3d(num_classes=400):
    torch.manual_seed(3)
    net = I3D(num_classes)
    for m in net.modules():  # non-trivial batch-norm statistics, so a lost buffer would show
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_safetensors_weights_round_trip_with_their_sha256(tmp_path):
    net = _small_i3d(num_classes=600)
    path = tmp_path / "i3d.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded, sha = load_i3d(path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.num_classes == 600 and not loaded.training
    video = torch.rand(1, 3, 8, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(video)[1], loaded(video)[1])


def test_pickled_state_dicts_need_trust_pickle(tmp_path):
    net = _small_i3d()
    path = tmp_path / "rgb_imagenet.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)  # as nn.DataParallel saves it
    with pytest.raises(ValueError, match="--trust-pickle"):
        load_i3d(path)
    loaded, _ = load_i3d(path, trust_pickle=True)
    video = torch.rand(1, 3, 8, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(video)[1], loaded(video)[1])


def test_wrong_or_missing_weights_fail_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_i3d(tmp_path / "nope.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(ValueError, match="logits.conv3d.weight"):
        load_i3d(other)
    state = {k: v.contiguous() for k, v in _small_i3d().state_dict().items() if not k.startswith("Mixed_5c")}
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial))
    with pytest.raises(ValueError, match="missing.*Mixed_5c"):
        load_i3d(partial)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_i3d(junk)
