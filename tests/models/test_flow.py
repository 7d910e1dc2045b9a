"""Warping, the forward-backward check and the FlowNet: closed-form cases and the shipped weights' accuracy."""

import pytest
import torch

from kinema.config import FlowConfig
from kinema.evaluation.temporal import translated_digits, translation_epe
from kinema.models.flow import FlowNet, end_point_error, inside_mask, occlusion_mask, warp
from kinema.models.model_dir import load_flow_net, save_flow_net


def textured(b=2, c=1, h=20, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g) * 2 - 1


def test_zero_flow_is_identity():
    frame = textured(c=3)
    out = warp(frame, torch.zeros(2, 2, 20, 24))
    torch.testing.assert_close(out, frame, atol=1e-5, rtol=0)  # float32 rounding of the normalised grid


@pytest.mark.parametrize("sx,sy", [(3, 0), (0, -2), (2, 1), (-4, 3)])
def test_integer_shift_is_undone_by_matching_flow(sx, sy):
    f1 = textured()
    f2 = torch.zeros_like(f1)  # f2(x, y) = f1(x - sx, y - sy): the content moved by (+sx, +sy)
    h, w = f1.shape[-2:]
    f2[..., max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)] = \
        f1[..., max(-sy, 0):h + min(-sy, 0), max(-sx, 0):w + min(-sx, 0)]
    flow = torch.tensor([float(sx), float(sy)]).view(1, 2, 1, 1).expand(2, 2, h, w)
    rebuilt = warp(f2, flow)
    inside = inside_mask(flow).bool().expand_as(f1)
    assert inside.float().mean() < 1  # some pixels come from outside the frame ...
    torch.testing.assert_close(rebuilt[inside], f1[inside], atol=1e-5, rtol=0)  # ... all others are exact


def test_gradients_reach_the_flow():
    f1, f2 = textured(seed=1), textured(seed=2)
    flow = torch.full((2, 2, 20, 24), 0.3, requires_grad=True)
    (warp(f2, flow) - f1).abs().mean().backward()
    assert flow.grad is not None and flow.grad.abs().sum() > 0


def test_occlusion_mask_consistent_and_inconsistent_flows():
    h, w = 16, 16
    fw = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, h, w)
    visible = occlusion_mask(fw, -fw)
    assert visible[..., :, : w - 2].eq(1).all()  # consistent everywhere the target stays in the frame
    assert visible[..., :, w - 2:].eq(0).all()  # p + 2 leaves the frame
    assert occlusion_mask(fw, fw).sum() == 0  # the backward flow does not undo the forward one


def test_end_point_error_closed_form():
    a = torch.zeros(1, 2, 4, 4)
    b = torch.zeros(1, 2, 4, 4)
    b[:, 0], b[:, 1] = 3.0, 4.0
    assert end_point_error(a, b).item() == pytest.approx(5.0)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 0, 0] = 1
    b[..., 0, 0] = 0
    assert end_point_error(a, b, mask).item() == pytest.approx(0.0)


def test_flownet_shapes_and_errors():
    net = FlowNet(FlowConfig(in_channels=3, width=8, levels=3))
    flow = net(textured(c=3, h=20, w=24), textured(c=3, h=20, w=24, seed=1))
    assert flow.shape == (2, 2, 20, 24) and flow.dtype == torch.float32
    assert flow.abs().max() == 0  # the last conv starts at zero: "no motion" before training
    with pytest.raises(ValueError, match="3-channel"):
        net(textured(c=1), textured(c=1))
    with pytest.raises(ValueError, match="too small"):
        FlowNet(FlowConfig(levels=6))(textured(h=8, w=8), textured(h=8, w=8))
    fw, bw = net.video_flows(torch.randn(2, 3, 5, 16, 16))
    assert fw.shape == bw.shape == (2, 4, 2, 16, 16)


def test_save_and_load_flow_model_dir(tmp_path):
    net = FlowNet(FlowConfig(width=8, levels=2))
    torch.nn.init.normal_(net.levels[0].net[-1].weight)
    save_flow_net(tmp_path / "f", net)
    back = load_flow_net(tmp_path / "f")
    x = textured(h=16, w=16)
    torch.testing.assert_close(back(x, x.flip(-1)), net(x, x.flip(-1)))
    with pytest.raises(FileNotFoundError, match="no bundled model"):
        load_flow_net("no-such-flow-model")


def test_translated_digits_ground_truth_rebuilds_f1():
    f1, f2, flow, mask = translated_digits(16, max_shift=2.0)
    assert f1.shape == f2.shape == (16, 1, 32, 32) and flow.shape == (16, 2, 32, 32)
    assert mask.sum() > 16 * 20
    err_true = (warp(f2, flow) - f1).abs()[mask.bool()].mean()
    err_zero = (f2 - f1).abs()[mask.bool()].mean()
    assert err_true < 0.5 * err_zero  # the given flow does explain the motion


def test_bundled_flow_model_end_point_error_below_half_a_pixel():
    net = load_flow_net("flow-moving-digits")
    epe = translation_epe(net, n=256, max_shift=2.5, seed=1)
    untrained = translation_epe(FlowNet(net.config), n=256, max_shift=2.5, seed=1)
    assert epe < 0.5, epe
    assert untrained > 1.0  # the task is not trivially easy


# ---- following a point ----


class _ConstantFlow(torch.nn.Module):
    """A stand-in FlowNet: every pixel moves by `step` from each frame to the next; only inside a box for f(a, b)."""

    def __init__(self, step):
        super().__init__()
        self.step = torch.tensor(step, dtype=torch.float32)

    def video_flows(self, video):
        b, _, t, h, w = video.shape
        fw = self.step.view(1, 1, 2, 1, 1).expand(b, t - 1, 2, h, w).clone()
        return fw, -fw

    def forward(self, f1, f2):
        flow = torch.zeros(f1.shape[0], 2, *f1.shape[-2:])
        flow[:, :, 4:8, 10:14] = self.step.view(1, 2, 1, 1)  # rows 4-7, columns 10-13 move
        return flow


def test_a_followed_point_moves_by_the_flow_each_frame_and_stays_inside():
    from kinema.models.flow import track_points

    net = _ConstantFlow([1.5, -0.5])
    path = track_points(net, torch.zeros(2, 1, 5, 16, 16), torch.tensor([[2.0, 8.0], [14.0, 1.0]]))
    assert path.shape == (2, 5, 2)
    torch.testing.assert_close(path[0], torch.tensor([[2.0, 8.0], [3.5, 7.5], [5.0, 7.0], [6.5, 6.5], [8.0, 6.0]]))
    assert path[1, :, 0].max() <= 15 and path[1, :, 1].min() >= 0  # clamped to the frame


def test_sample_flow_is_bilinear_and_motion_start_finds_the_moving_box():
    from kinema.models.flow import motion_start, sample_flow

    flow = torch.zeros(1, 2, 4, 4)
    flow[0, 0, 1, 2], flow[0, 0, 1, 3] = 2.0, 4.0  # x-flow at row 1, columns 2 and 3
    torch.testing.assert_close(sample_flow(flow, torch.tensor([[2.5, 1.0]])), torch.tensor([[3.0, 0.0]]))
    start = motion_start(_ConstantFlow([2.0, 0.0]), torch.zeros(1, 1, 2, 16, 16))
    torch.testing.assert_close(start, torch.tensor([[11.5, 5.5]]))  # the centre of columns 10-13, rows 4-7
    still = motion_start(_ConstantFlow([0.0, 0.0]), torch.zeros(1, 1, 2, 16, 16))
    torch.testing.assert_close(still, torch.tensor([[7.5, 7.5]]))  # nothing moves: the frame's centre
