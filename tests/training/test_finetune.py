"""Fine-tuning: a base model's weights, LoRA adapters on a frozen base, new caption words, adapter directories."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kinema.cli import main
from kinema.config import UNetConfig, load_config
from kinema.models import SpaceTimeUNet
from kinema.models.lora import add_adapter, adapter_state, merge, set_scale, target_layers
from kinema.models.model_dir import load_adapter_dir
from kinema.pipeline import VideoPipeline
from kinema.training import Trainer
from kinema.training.checkpoint import load_checkpoint

TINY = {
    "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
    "model.norm_groups": 4, "model.spatial_attention_levels": [1], "model.cond_dim": 8, "diffusion.num_steps": 100,
    "data.size": 24, "data.num_frames": 4, "data.length": 64, "data.max_digits": 1, "cond.text": "gru",
    "train.batch_size": 2, "train.log_every": 1, "train.checkpoint_every": 2, "train.sample_every": 0,
    "train.warmup_steps": 1, "train.lr": 1e-2, "train.mixed_precision": "no",
}
UNET = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
                  spatial_attention_levels=(1,), frame_conditioning=True)


def _randomised(model):
    """`model` with every weight drawn at random (its zero-initialised layers would hide any update)."""
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def _x():
    return torch.randn(2, 1, 4, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([10, 70])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    Trainer(load_config(None, {**TINY, "train.steps": 2}), out).fit()
    return out / "model"


def test_an_adapter_at_scale_zero_is_the_base_bit_for_bit():
    model = _randomised(SpaceTimeUNet(UNET))
    x, t = _x()
    before = model(x, t)
    add_adapter(model, "a", rank=2)
    for key, p in model.named_parameters():
        if ".lora." in key:
            torch.nn.init.normal_(p, std=0.5)
    assert not torch.equal(model(x, t), before)  # the adapter acts
    set_scale(model, "a", 0.0)
    assert torch.equal(model(x, t), before)


@pytest.mark.parametrize("targets", [("attention",), ("conv", "temporal", "film")])
def test_merged_and_unmerged_adapters_agree(targets):
    model = _randomised(SpaceTimeUNet(UNET))
    add_adapter(model, "a", rank=3, alpha=6.0, targets=targets)
    add_adapter(model, "b", rank=1, targets=targets)
    for key, p in model.named_parameters():
        if ".lora." in key:
            torch.nn.init.normal_(p, std=0.3)
    set_scale(model, "b", 0.5)
    x, t = _x()
    with torch.no_grad():
        unmerged = model(x, t)
        merge(model, "a")
        merge(model, "b")
        merged = model(x, t)
    assert not adapter_state(model, "a") and not adapter_state(model, "b")
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)


def test_targets_name_the_layers():
    model = SpaceTimeUNet(UNET)
    names = target_layers(model, ["attention"])
    assert names and all(n.rsplit(".", 1)[1] in ("qkv", "proj", "q", "kv") for n in names)
    with pytest.raises(ValueError, match="'dance'"):
        target_layers(model, ["dance"])
    with pytest.raises(ValueError, match="rank"):
        add_adapter(model, "a", rank=0)


def test_lora_finetune_freezes_the_base_and_grows_the_vocabulary(base, tmp_path):
    out = tmp_path / "lora"
    sets = {**TINY, "data.inverted": 0.5, "train.steps": 2}
    args = [a for k, v in sets.items() if not k.startswith(("model.", "diffusion.", "cond."))
            for a in ("--set", f"{k}={json.dumps(v)}")]
    assert main(["finetune", "--model", str(base), "--out", str(out), "--lora-rank", "2", *args]) == 0
    adapter = load_adapter_dir(out / "adapter")
    assert adapter.new_words == ["inverted"] and adapter.rank == 2 and adapter.embeddings.shape == (1, 8)
    base_unet = load_file(base / "model.safetensors")
    _, state = load_checkpoint(out)
    assert all(torch.equal(state["model"][k], v) for k, v in base_unet.items())  # the base did not move
    assert any(".lora." in k and state["model"][k].abs().sum() > 0 for k in state["model"] if k.endswith("up.weight"))
    old_vocab = json.loads((base / "text_vocab.json").read_text())
    emb = state["conditioner"]["text.embed.weight"]
    base_cond = load_file(base / "conditioner.safetensors")
    assert emb.shape[0] == len(old_vocab) + 1
    assert torch.equal(emb[: len(old_vocab)], base_cond["text.embed.weight"])  # old ids keep their rows

    pipe = VideoPipeline.from_pretrained(base, device="cpu")
    plain = pipe(1, prompt="digit 3 moving up", steps=2, seed=0, progress=False).numpy()
    name = pipe.load_adapter(out / "adapter", scale=0.0)
    assert pipe.conditioner.text.tokenizer.words[: len(old_vocab)] == old_vocab  # old ids keep their meaning
    assert np.array_equal(pipe(1, prompt="digit 3 moving up", steps=2, seed=0, progress=False).numpy(), plain)
    pipe(1, prompt="digit 3 moving up, inverted", steps=2, seed=0, progress=False)  # the new word is known
    pipe.set_adapter_scale(name, 1.0)
    assert main(["sample", "--model", str(base), "--adapter", str(out / "adapter"), "--prompt", "digit 1 moving up",
                 "--num", "1", "--steps", "2", "--out", str(tmp_path / "clips")]) == 0


def test_an_adapter_meets_a_foreign_base(base, tmp_path):
    out = tmp_path / "lora"
    Trainer(load_config(None, {**TINY, "train.steps": 2, "finetune.init_from": str(base), "finetune.lora_rank": 1}),
            out).fit()
    other = tmp_path / "other"
    Trainer(load_config(None, {**TINY, "train.steps": 2, "train.seed": 5}), other).fit()
    pipe = VideoPipeline.from_pretrained(other, device="cpu")
    with pytest.raises(ValueError, match="was trained on"):
        pipe.load_adapter(out / "adapter")
    with pytest.raises(ValueError, match="LoRA adapter, not a model"):
        VideoPipeline.from_pretrained(out)


def test_full_finetune_starts_from_the_base_and_refuses_another_network(base, tmp_path):
    cfg = load_config(None, {**TINY, "train.steps": 1, "finetune.init_from": str(base)})
    trainer = Trainer(cfg, tmp_path / "full")
    start = load_file(base / "model.safetensors")
    assert all(torch.equal(trainer.unwrapped_model.state_dict()[k], v) for k, v in start.items())
    with pytest.raises(ValueError, match="model.channels"):
        Trainer(load_config(None, {**TINY, "model.channels": 16, "finetune.init_from": str(base)}), tmp_path / "x")


def test_finetune_cli_refuses_a_config_with_another_network(base, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  channels: 16\ndata:\n  kind: moving-digits\n")
    assert main(["finetune", "--model", str(base), "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    assert "model.channels unlike the base model" in capsys.readouterr().err
    assert main(["finetune", "--out", str(tmp_path / "y")]) == 2
    assert "needs --model" in capsys.readouterr().err  # no base named anywhere
