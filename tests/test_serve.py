"""The web page's request handler without a browser: the form's values reach the pipeline."""

import torch

from kinema.config import DiffusionConfig, UNetConfig
from kinema.data import read_video
from kinema.models import SpaceTimeUNet
from kinema.pipeline import VideoPipeline
from kinema.serve import generate_clip


def test_the_cache_interval_of_the_form_reaches_the_pipeline(tmp_path, step_caches):
    torch.manual_seed(0)
    net = SpaceTimeUNet(UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
                                   spatial_attention_levels=(1,))).eval()
    pipe = VideoPipeline(net, DiffusionConfig(num_steps=100), size=16, num_frames=4, device="cpu")
    path = generate_clip(pipe, task="generate", sampler="dpmpp_2m", steps=6, frames=4, cache_interval=3.0,
                         out_dir=str(tmp_path))
    assert read_video(path).shape == (4, 16, 16, 3)
    assert [(c.interval, c.full_calls, c.reused_calls) for c in step_caches] == [(3, 2, 4)]
