"""The Trainer end to end on a tiny model: loss terms, outputs on disk, exact resume."""

import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from kinema.config import load_config
from kinema.training import Trainer
from kinema.training.checkpoint import (
    flatten_state,
    list_checkpoints,
    load_checkpoint,
    nonfinite_tensors,
)
from kinema.training.data_order import SeededExamples, StepBatchSampler
from kinema.training.trainer import TrainingDiverged, lr_factor

TINY = {
    "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
    "model.norm_groups": 4, "model.spatial_attention_levels": [1], "diffusion.num_steps": 100,
    "data.size": 24, "data.num_frames": 4, "data.length": 64, "train.batch_size": 2, "train.log_every": 1,
    "train.checkpoint_every": 2, "train.sample_every": 0, "train.warmup_steps": 2, "train.lr": 1e-3,
}


def tiny_config(**extra):
    return load_config(None, {**TINY, **extra})


def test_fit_writes_run_directory(tmp_path):
    Trainer(tiny_config(**{"train.steps": 3, "train.sample_every": 3, "train.sample_steps": 2,
                           "train.num_samples": 2}), tmp_path).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["loss"] == r["loss"] for r in rows)
    for name in ("loss.png", "config.json", "model/config.json", "model/model.safetensors",
                 "samples/step_00000003.gif"):
        assert (tmp_path / name).is_file(), name
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000002", "step_00000003"] or \
        sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000002", "step_00000003"]


def test_hybrid_loss_logs_vb(tmp_path):
    cfg = tiny_config(**{"train.steps": 2, "model.learned_variance": True, "diffusion.loss": "hybrid"})
    Trainer(cfg, tmp_path).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("vb" in r and r["vb"] >= 0 for r in rows)


@pytest.mark.parametrize("precision", ["no", "auto"])
def test_resume_continues_exactly(tmp_path, precision):
    """4 steps + resume to 6 ends with the same weights as 6 uninterrupted steps."""
    cfg = dict(**{"train.mixed_precision": precision})
    Trainer(tiny_config(**cfg, **{"train.steps": 6}), tmp_path / "straight").fit()
    Trainer(tiny_config(**cfg, **{"train.steps": 4}), tmp_path / "split").fit()
    resumed = Trainer(tiny_config(**cfg, **{"train.steps": 6}), tmp_path / "split", resume=True)
    assert resumed.step_count == 4
    resumed.fit()
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "split" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_without_checkpoint_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny_config(), tmp_path, resume=True)



def test_resume_refuses_another_network_and_names_it(tmp_path):
    Trainer(tiny_config(**{"train.steps": 2}), tmp_path).fit()
    with pytest.raises(ValueError, match=r"model.channels: 8 -> 16"):
        Trainer(tiny_config(**{"train.steps": 4, "model.channels": 16}), tmp_path, resume=True)
    changed = {"train.steps": 4, "train.lr": 5e-4, "cond.drop_text": 0.5}  # what to train on may change
    Trainer(tiny_config(**changed), tmp_path, resume=True).fit()


def test_resume_of_a_run_older_than_a_config_key_takes_the_keys_default(tmp_path):
    Trainer(tiny_config(**{"train.steps": 2}), tmp_path).fit()
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    del saved["model"]["map_channels"], saved["cond"]["trajectory"]  # as written before those keys existed
    path.write_text(json.dumps(saved))
    Trainer(tiny_config(**{"train.steps": 3}), tmp_path, resume=True).fit()  # absent = the default: the same run
    with pytest.raises(ValueError, match=r"cond.trajectory: 'none' -> 'vector'"):
        Trainer(tiny_config(**{"train.steps": 4, "cond.trajectory": "vector", "model.cond_dim": 8}), tmp_path,
                resume=True)


def test_cli_resume_without_config_continues_with_the_runs_own(tmp_path):
    from kinema.cli import main

    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    assert main(["train", "--out", str(tmp_path), "--steps", "2", *sets, "--set", "model.channels=16"]) == 0
    assert main(["train", "--out", str(tmp_path), "--steps", "4", "--resume"]) == 0  # no --config, no --set
    assert json.loads((tmp_path / "config.json").read_text())["model"]["channels"] == 16
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1] == 4


@pytest.mark.parametrize("name", ["text", "image"])
@pytest.mark.parametrize("task, kept", [("generate", True), ("predict", False)])
def test_drop_rate_follows_the_task(tmp_path, name, task, kept):
    # drop rate 0 without frames and 1 with them: a condition is kept exactly when no frame is given
    rates = {f"masks.{t}": float(t == task) for t in ("generate", "predict", "interpolate", "animate", "random")}
    cfg = tiny_config(**{"model.frame_conditioning": True, "model.cond_dim": 16, "cond.text": "gru",
                         "cond.image": True, f"cond.drop_{name}": 0.0, f"cond.drop_{name}_with_frames": 1.0, **rates})
    trainer = Trainer(cfg, tmp_path)
    seen, encode = [], trainer.encode
    def spy(conditioner, batch, **kw):
        seen.append(kw["keep"][name])
        return encode(conditioner, batch, **kw)

    trainer.encode = spy
    trainer.loss(next(iter(trainer.loader)))
    assert seen[0].tolist() == [kept] * cfg.train.batch_size


@pytest.mark.parametrize("drop_all", [0.0, 0.5, 1.0])
def test_drop_all_drops_every_condition_of_a_clip_together(tmp_path, drop_all):
    # own drop rates 0: a clip loses its conditions only through drop_all, and then all of them at once
    cfg = tiny_config(**{"model.cond_dim": 16, "cond.text": "gru", "cond.image": True, "cond.drop_text": 0.0,
                         "cond.drop_image": 0.0, "cond.drop_all": drop_all, "train.batch_size": 64})
    trainer = Trainer(cfg, tmp_path)
    seen, encode = [], trainer.encode
    def spy(conditioner, batch, **kw):
        seen.append(kw["keep"])
        return encode(conditioner, batch, **kw)

    trainer.encode = spy
    trainer.loss(next(iter(trainer.loader)))
    text, image = seen[0]["text"], seen[0]["image"]
    assert text.tolist() == image.tolist()
    share = 1 - text.float().mean().item()
    assert abs(share - drop_all) < 0.2, share  # 64 clips: standard error 0.06 at 0.5
    if drop_all in (0.0, 1.0):
        assert share == drop_all


def test_drop_all_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match=r"cond.drop_all.*1.5"):
        tiny_config(**{"cond.drop_all": 1.5})


def _batches(n, **kw):
    opts = {"batch_size": 4, "seed": 0, "process": 0, "num_processes": 1, "start_step": 0, "micro": 1} | kw
    return [batch for _, batch in zip(range(n), StepBatchSampler(100, **opts))]


def test_batches_are_a_function_of_the_step():
    first = _batches(10, micro=2)
    assert _batches(4, micro=2, start_step=3) == first[6:10]
    assert first[0] != first[2]  # steps differ


def test_any_split_of_the_global_batch_sees_the_same_examples():
    whole = _batches(2, batch_size=8)
    shards = [_batches(2, process=p, num_processes=2) for p in (0, 1)]
    assert [shards[0][s] + shards[1][s] for s in (0, 1)] == whole  # per-process sharding
    micro = _batches(4, micro=2)
    assert [micro[0] + micro[1], micro[2] + micro[3]] == whole  # gradient accumulation
    assert len({seed for _, seed in whole[0]}) == 8  # every example has its own seed


class _Noisy(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"video": torch.rand(3), "index": i}


def test_seeded_examples_depend_on_the_seed_only():
    data = SeededExamples(_Noisy())
    torch.manual_seed(1)
    a = data[(3, 77)]
    state = torch.get_rng_state()
    torch.rand(5)  # move the global stream: the item must not change
    b = data[(3, 77)]
    assert torch.equal(a["video"], b["video"]) and a["seed"] == 77 and a["index"] == 3
    assert not torch.equal(a["video"], data[(3, 78)]["video"])
    torch.set_rng_state(state)
    data[(3, 77)]
    assert torch.equal(torch.get_rng_state(), state)  # reading an item leaves the global RNG alone


def test_worker_processes_draw_what_the_main_process_draws():
    """Random augmentation depends on the example seed, not on which worker (or none) reads it."""
    def batches(workers):
        sampler = StepBatchSampler(10, 4, seed=0, process=0, num_processes=1, start_step=5, micro=1)
        loader = torch.utils.data.DataLoader(SeededExamples(_Noisy()), batch_sampler=sampler, num_workers=workers)
        return [batch["video"] for _, batch in zip(range(3), loader)]

    main_process, workers = batches(0), batches(2)
    assert all(torch.equal(a, b) for a, b in zip(main_process, workers))
    assert not torch.equal(main_process[0], main_process[1])


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()}


def _one_step(tmp_path, **extra):
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    trainer = Trainer(tiny_config(**{"train.mixed_precision": "no", "model.frame_conditioning": True, **extra}),
                      tmp_path)
    it = iter(trainer.loader)
    trainer.step([next(it) for _ in range(trainer.config.train.grad_accum)])
    return _weights(trainer)


def test_optimizer_is_fused_adamw(tmp_path):
    """One AdamW kernel over all parameters (CPU and CUDA), and the update AdamW's first step makes."""
    trainer = Trainer(tiny_config(**{"train.mixed_precision": "no", "train.weight_decay": 0.0}), tmp_path)
    group = trainer.optimizer.param_groups[0]
    assert group["fused"] is True
    before = [p.detach().clone() for p in group["params"]]
    it = iter(trainer.loader)
    grads = {}
    hooks = [p.register_post_accumulate_grad_hook(lambda p: grads.__setitem__(id(p), p.grad.clone()))
             for p in group["params"]]
    trainer.step([next(it)])
    for h in hooks:
        h.remove()
    lr = trainer.config.train.lr / trainer.config.train.warmup_steps  # the first warm-up step's LR
    for p, w in zip(group["params"], before):
        g = grads[id(p)]  # first step: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps)
        torch.testing.assert_close(p.detach(), w - lr * g / (g.abs() + group["eps"]), rtol=1e-5, atol=1e-7)


def test_accumulation_matches_a_bigger_batch(tmp_path):
    """batch 2 x 2 micro-batches updates the weights as batch 4 does (the same clips, t, eps and masks)."""
    big = _one_step(tmp_path / "a", **{"train.batch_size": 4})
    accum = _one_step(tmp_path / "b", **{"train.batch_size": 2, "train.grad_accum": 2})
    other = _one_step(tmp_path / "c", **{"train.batch_size": 4, "train.seed": 1})
    diff = max((big[k] - accum[k]).abs().max().item() for k in big)
    assert diff < 1e-6, diff
    assert max((big[k] - other[k]).abs().max().item() for k in big) > 1e-4  # the check can tell batches apart


def _poison(monkeypatch, bad_steps):
    """Make Trainer.loss return NaN while the step count is in `bad_steps`."""
    loss = Trainer.loss

    def poisoned(self, batch):
        terms = loss(self, batch)
        if self.step_count in bad_steps:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(Trainer, "loss", poisoned)


def test_nan_step_is_skipped_and_counted(tmp_path, monkeypatch):
    _poison(monkeypatch, {2})
    trainer = Trainer(tiny_config(**{"train.steps": 4}), tmp_path)
    batches = iter(trainer.loader)
    for _ in range(2):
        trainer.step([next(batches)])
    before, adam = _weights(trainer), copy.deepcopy(trainer.optimizer.state_dict())
    logs = trainer.step([next(batches)])
    assert logs["skipped"] == 1 and logs["loss"] != logs["loss"]
    assert trainer.step_count == 3 and trainer.skipped == 1 and trainer.bad_in_row == 1
    after = _weights(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(a, b) for a, b in zip(adam["state"][0].values(),
                                                  trainer.optimizer.state_dict()["state"][0].values()))
    assert trainer.step([next(batches)])["loss"] > 0 and trainer.bad_in_row == 0 and trainer.skipped == 1
    assert any(not torch.equal(before[k], v) for k, v in _weights(trainer).items())


def test_metrics_count_skipped_steps(tmp_path, monkeypatch):
    _poison(monkeypatch, {1})
    Trainer(tiny_config(**{"train.steps": 3, "train.log_every": 3}), tmp_path).fit()
    (row,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row["skipped"] == 1 and row["loss"] > 0 and row["step"] == 3


def test_nan_in_a_row_stops_with_an_intact_checkpoint(tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, set(range(2, 100)))
    trainer = Trainer(tiny_config(**{"train.steps": 20, "train.max_bad_steps": 3}), tmp_path)
    with pytest.raises(TrainingDiverged, match=r"stopped at step 5: 3 steps in a row .*step_00000004, is intact"):
        trainer.fit()
    assert "step 3: loss nan" in capsys.readouterr().out
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002", "step_00000004"]
    step, state = load_checkpoint(tmp_path)
    tensors, _ = flatten_state(state)
    assert step == 4 and not nonfinite_tensors(tensors) and len(tensors) > 10
    assert state["bad_steps"] == (2, 2)  # steps 3 and 4 were skipped: the streak resumes with the run
    _, before = load_checkpoint(list_checkpoints(tmp_path)[0])
    assert all(torch.equal(before["model"][k], v) for k, v in state["model"].items())  # no update since step 2


def test_nonfinite_weights_are_never_checkpointed(tmp_path):
    trainer = Trainer(tiny_config(**{"train.steps": 2}), tmp_path)
    trainer.fit()
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("inf")
    with pytest.raises(TrainingDiverged, match="NaN / Inf.*step_00000002, is intact"):
        trainer.save()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002"]


def test_truncated_newest_checkpoint_falls_back_with_a_warning(tmp_path):
    """Steps 2 and 4 are saved, step 4's tensor file is cut in half: resume warns, restarts at 2, ends exact."""
    cfg = {"train.mixed_precision": "no"}
    Trainer(tiny_config(**cfg, **{"train.steps": 6}), tmp_path / "straight").fit()
    Trainer(tiny_config(**cfg, **{"train.steps": 4}), tmp_path / "cut").fit()
    newest = tmp_path / "cut" / "checkpoints" / "step_00000004" / "state.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint .*step_00000004"):
        resumed = Trainer(tiny_config(**cfg, **{"train.steps": 6}), tmp_path / "cut", resume=True)
    assert resumed.step_count == 2
    resumed.fit()
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_another_global_batch_warns(tmp_path):
    Trainer(tiny_config(**{"train.steps": 2}), tmp_path).fit()
    with pytest.warns(UserWarning, match="global batch of 2, this run has 4"):
        Trainer(tiny_config(**{"train.steps": 4, "train.batch_size": 4}), tmp_path, resume=True)


def test_fresh_run_refuses_a_directory_with_checkpoints(tmp_path):
    Trainer(tiny_config(**{"train.steps": 2}), tmp_path).fit()
    with pytest.raises(ValueError, match="already holds checkpoints .*step_00000002.*--resume"):
        Trainer(tiny_config(**{"train.steps": 2}), tmp_path)


def test_fresh_run_drops_what_a_run_killed_before_its_first_checkpoint_left(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    (tmp_path / "checkpoints" / ".tmp-step_00000002-7-abcd").mkdir(parents=True)
    Trainer(tiny_config(**{"train.steps": 1}), tmp_path).fit()
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000001"]


def test_half_written_metrics_line_is_dropped_on_resume(tmp_path):
    Trainer(tiny_config(**{"train.steps": 2}), tmp_path).fit()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # killed mid-write
    Trainer(tiny_config(**{"train.steps": 3}), tmp_path, resume=True).fit()
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


@pytest.mark.slow  # inductor compiles forward and backward: minutes on 2 cores
def test_compiled_training_matches_eager_and_saves_plain_weights(tmp_path):
    """train.compile runs the UNet through torch.compile; checkpoints and the model dir keep plain keys."""
    cfg = {"train.steps": 2, "train.mixed_precision": "no"}
    compiled = Trainer(tiny_config(**cfg, **{"train.compile": True}), tmp_path / "compiled")
    assert hasattr(compiled.model, "_orig_mod")  # really compiled
    compiled.fit()
    Trainer(tiny_config(**cfg), tmp_path / "eager").fit()

    def losses(run):
        return [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    # step 1 sees the same weights and batch: the compiled graph computes the same loss
    assert losses("compiled")[0] == pytest.approx(losses("eager")[0], rel=1e-4)
    a = load_file(tmp_path / "compiled" / "model" / "model.safetensors")
    b = load_file(tmp_path / "eager" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in a)
    _, state = load_checkpoint(tmp_path / "compiled")
    assert state["model"].keys() == b.keys()


@pytest.mark.parametrize("option", ["gradient_checkpointing", "recompute_activations"])
def test_gradient_checkpointing_trains_like_the_plain_step(tmp_path, option):
    """train.gradient_checkpointing / recompute_activations change memory, not the result: the same losses
    and the same weights."""
    cfg = {"train.steps": 3, "train.mixed_precision": "no", "train.checkpoint_every": 3}
    ckpt = Trainer(tiny_config(**cfg, **{f"train.{option}": True}), tmp_path / "ckpt")
    assert getattr(ckpt.unwrapped_model, option)
    ckpt.fit()
    Trainer(tiny_config(**cfg), tmp_path / "plain").fit()

    def losses(run):
        return [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert losses("ckpt") == pytest.approx(losses("plain"), rel=1e-4)
    a = load_file(tmp_path / "ckpt" / "model" / "model.safetensors")
    b = load_file(tmp_path / "plain" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_cosine_lr_decay_warms_up_then_falls_to_zero_at_the_last_step(tmp_path):
    Trainer(tiny_config(**{"train.steps": 6, "train.lr_decay": "cosine"}), tmp_path).fit()
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # step k runs at lr * factor(k - 1): warm-up 1/2, 2/2, then 0.5 (1 + cos(pi j / 4)) for j = 0 .. 3
    expected = [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]
    assert lrs == pytest.approx([1e-3 * f for f in expected], rel=1e-9)
    assert lr_factor(6, warmup=2, steps=6, decay="cosine") == 0.0
    assert [lr_factor(s, warmup=2, steps=6) for s in range(8)] == [0.5] + [1.0] * 7  # "none": the peak to the end
    with pytest.raises(ValueError, match="train.lr_decay"):
        tiny_config(**{"train.lr_decay": "linear"})


def _loss_terms_without_and_with(tmp_path, key: str, **extra) -> list[dict]:
    """One batch's loss terms from fresh tiny trainers with `key` at 0 and 0.5: the same seeds, the image dropped."""
    from accelerate.state import AcceleratorState

    base = {"train.mixed_precision": "no", "model.frame_conditioning": True, "model.cond_dim": 16,
            "cond.image": True, "cond.drop_image": 1.0, "train.batch_size": 3, **extra}
    terms = []
    for weight in (0.0, 0.5):
        AcceleratorState._reset_state(reset_partial_state=True)
        torch.manual_seed(0)
        trainer = Trainer(tiny_config(**base, **{key: weight}), tmp_path / str(weight))
        terms.append(trainer.loss(next(iter(trainer.loader))))
    return terms


def test_identity_term_is_logged_and_leaves_the_other_draws_alone(tmp_path):
    # cond.identity_weight draws its frame last: the diffusion terms equal those of the run without it (the image
    # dropped: with the term the network sees the image latent's mean, not a draw)
    terms = _loss_terms_without_and_with(tmp_path, "cond.identity_weight")
    assert "identity" not in terms[0]
    assert terms[1]["mse"].item() == pytest.approx(terms[0]["mse"].item(), rel=1e-6)
    assert terms[1]["loss"].item() == pytest.approx(terms[0]["loss"].item() + 0.5 * terms[1]["identity"].item(),
                                                    rel=1e-5)
    assert 0 < terms[1]["identity"].item() < 2 * math.log(3)


def test_caption_term_is_logged_added_and_changes_no_draw(tmp_path):
    # the caption term draws nothing and the image is dropped: the diffusion terms equal those of the run without it
    terms = _loss_terms_without_and_with(tmp_path, "cond.caption_weight", **{"cond.text": "gru",
                                                                            "cond.drop_image_with_frames": 1.0})
    assert "caption" not in terms[0]
    assert terms[1]["mse"].item() == pytest.approx(terms[0]["mse"].item(), rel=1e-6)
    assert terms[1]["loss"].item() == pytest.approx(terms[0]["loss"].item() + 0.5 * terms[1]["caption"].item(),
                                                    rel=1e-5)
    assert 0 < terms[1]["caption"].item() < 2 * math.log(3)  # a fresh encoder: near the ln 3 of a guess


def test_identity_weight_needs_the_image_encoder():
    with pytest.raises(ValueError, match="cond.identity_weight"):
        tiny_config(**{"cond.identity_weight": 0.1})


@pytest.mark.parametrize("term, weight, same", [("identity_weight", 0.0, False), ("identity_weight", 0.5, True),
                                                ("caption_weight", 0.5, True)])
def test_with_an_identity_or_caption_term_the_network_sees_the_image_latents_mean(tmp_path, term, weight, same):
    # a draw of the image latent changes with the global seed; its mean does not
    text = {"cond.text": "gru", "cond.drop_text": 1.0, "cond.drop_text_with_frames": 1.0}
    text = text if term == "caption_weight" else {}
    cfg = tiny_config(**{"train.mixed_precision": "no", "model.frame_conditioning": True, "model.cond_dim": 16,
                         "cond.image": True, "cond.drop_image": 0.0, "cond.drop_image_with_frames": 0.0,
                         f"cond.{term}": weight, "train.batch_size": 3, **text})
    trainer = Trainer(cfg, tmp_path)
    with torch.no_grad():  # off the zero-initialised condition projections, so the image token reaches the output
        for p in trainer.accelerator.unwrap_model(trainer.model).parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = next(iter(trainer.loader))
    mse = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        mse.append(trainer.loss(batch)["mse"].item())
    assert (mse[0] == mse[1]) == same
