"""Conditions: encoders, dropping (CFG), cross-attention / FiLM in the UNet, and model directories that reload them."""

import math
import warnings

import numpy as np
import pytest
import torch

from kinema.config import CondConfig, UNetConfig
from kinema.models import SpaceTimeUNet
from kinema.models.encoders import Conditioner, ImageEncoder, Tokenizer, caption_loss, identity_loss
from kinema.models.model_dir import save_model_dir
from kinema.types import Cond

CAPTIONS = ["digit 3 moving up", "digit 7 moving down and left", "digit 0 moving right"]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _unet(cond_dim=16, **kw):
    cfg = UNetConfig(channels=16, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
                     spatial_attention_levels=(1,), cond_dim=cond_dim, **kw)
    model = SpaceTimeUNet(cfg).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # zero-initialised output layers would hide the conditions entirely
        for name, p in model.named_parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.2)
    return model


def _conditioner(text="gru", dim=16, **kw):
    torch.manual_seed(1)
    cfg = CondConfig(text=text, image=True, audio=True, n_mels=8, audio_steps_per_frame=2, **kw)
    return Conditioner(cfg, dim, in_channels=1, tokenizer=Tokenizer.build(CAPTIONS)).eval()


def _inputs(b=3, t=4):
    g = _gen(2)
    return dict(text=CAPTIONS[:b], image=torch.rand(b, 1, 16, 16, generator=g) * 2 - 1,
                audio=torch.randn(b, 8, 2 * t, generator=g))


# ---- Cond ----


def test_cond_drop_masks_tokens_and_zeroes_vectors():
    cond = Cond(tokens=torch.ones(2, 3, 4), pooled=torch.ones(2, 4), per_frame=torch.ones(2, 5, 4))
    dropped = cond.drop(torch.tensor([True, False]))
    assert dropped.mask.tolist() == [[True] * 3, [False] * 3]
    assert dropped.pooled[1].abs().sum() == 0 and dropped.pooled[0].abs().sum() == 4
    assert dropped.per_frame[1].abs().sum() == 0 and dropped.per_frame[0].abs().sum() == 20


def test_cond_cat_joins_tokens_and_sums_vectors():
    a = Cond(tokens=torch.zeros(2, 3, 4), mask=torch.tensor([[1, 1, 0], [1, 0, 0]]).bool(), pooled=torch.ones(2, 4))
    b = Cond(tokens=torch.ones(2, 1, 4), pooled=2 * torch.ones(2, 4), per_frame=torch.ones(2, 5, 4))
    c = Cond.cat([a, b])
    assert c.tokens.shape == (2, 4, 4) and c.mask.tolist() == [[1, 1, 0, 1], [1, 0, 0, 1]]
    assert torch.equal(c.pooled, 3 * torch.ones(2, 4)) and c.per_frame.shape == (2, 5, 4)


def test_cond_stack_pads_and_fills_what_is_absent():
    a = Cond(tokens=torch.ones(2, 3, 4), mask=torch.tensor([[1, 1, 0], [1, 0, 0]]).bool())
    b = Cond(tokens=2 * torch.ones(2, 1, 4), pooled=torch.ones(2, 4), per_frame=torch.ones(2, 5, 4))
    s = Cond.stack([None, a, b], batch=2)
    assert s.tokens.shape == (6, 3, 4) and s.mask[:2].sum() == 0 and s.tokens[:2].abs().sum() == 0
    assert s.mask[2:4].tolist() == a.mask.tolist() and torch.equal(s.tokens[2:4], a.tokens)
    assert s.mask[4:].tolist() == [[True, False, False]] * 2 and torch.equal(s.tokens[4:, :1], b.tokens)
    assert s.pooled[:4].abs().sum() == 0 and torch.equal(s.pooled[4:], b.pooled)
    assert s.per_frame.shape == (6, 5, 4) and s.per_frame[:4].abs().sum() == 0
    assert Cond.stack([None, None], batch=2) is None


def test_stacked_conditions_give_each_branch_its_own_output():
    """One call on [x; x; x] with stacked conditions = three calls, one per condition (CFG batching)."""
    model, enc = _unet(frame_conditioning=True), _conditioner()
    x, t = torch.randn(2, 1, 4, 8, 8, generator=_gen(3)), torch.tensor([100, 700])
    inputs = _inputs(b=2)
    with torch.no_grad():
        text, _ = enc(2, text=inputs["text"])
        full, _ = enc(2, **inputs)
        conds = [None, text, full]  # different token counts; pooled and per-frame only in the last
        out = model(torch.cat([x] * 3), t.repeat(3), cond=Cond.stack(conds, batch=2)).chunk(3)
        for got, cond in zip(out, conds):
            torch.testing.assert_close(got, model(x, t, cond=cond), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(out[0], out[2], atol=1e-3)


# ---- text ----


def test_tokenizer_vocabulary_unknown_words_and_truncation():
    tok = Tokenizer.build(CAPTIONS)
    assert tok.words[:2] == ["<pad>", "<unk>"] and "digit" in tok.words and len(set(tok.words)) == len(tok)
    ids, mask = tok.encode(["Digit 3, moving UP!", "a zebra"], max_tokens=8)
    assert ids.shape == (2, 4) and mask.sum(1).tolist() == [4, 2]
    assert ids[1, 0].item() == 1 and ids[0, 0].item() == tok.index["digit"]
    with pytest.warns(UserWarning, match="only the first 2"):
        ids, _ = tok.encode(["digit 3 moving up"], max_tokens=2)
    assert ids.shape == (1, 2)
    assert Tokenizer(tok.words).words == tok.words
    with pytest.raises(ValueError, match="starts with"):
        Tokenizer(["digit", "<pad>"])


def test_gru_encoder_ignores_padding():
    """A prompt's tokens do not change when a longer prompt shares its batch (packed GRU)."""
    enc = _conditioner().text
    alone = enc(["digit 3 moving up"])
    padded = enc(["digit 3 moving up", "digit 7 moving down and left"])
    assert torch.allclose(alone.tokens[0], padded.tokens[0, :4], atol=1e-6)
    assert torch.allclose(alone.pooled[0], padded.pooled[0], atol=1e-6)
    assert padded.mask[0].tolist() == [True] * 4 + [False] * 2


# ---- dropping = absent (classifier-free guidance) ----


@pytest.mark.parametrize("name", ["text", "image", "audio"])
def test_dropping_a_condition_reproduces_the_branch_without_it(name):
    model, cond_enc, inputs = _unet(), _conditioner(), _inputs()
    x, t = torch.randn(3, 1, 4, 8, 8, generator=_gen(3)), torch.tensor([10, 500, 900])
    with torch.no_grad():
        keep = {name: torch.tensor([True, False, True])}
        dropped, _ = cond_enc(3, **inputs, keep=keep)
        without, _ = cond_enc(3, **{k: v for k, v in inputs.items() if k != name})
        full, _ = cond_enc(3, **inputs)
        out_dropped, out_without = model(x, t, cond=dropped), model(x, t, cond=without)
        out_full = model(x, t, cond=full)
    assert torch.allclose(out_dropped[1], out_without[1], atol=1e-5)  # the dropped clip: as if never given
    assert torch.allclose(out_dropped[0], out_full[0], atol=1e-5)  # the kept clips: unchanged
    assert not torch.allclose(out_full[1], out_without[1], atol=1e-3)  # and the condition does matter


def test_dropping_everything_equals_no_condition():
    model, cond_enc, inputs = _unet(), _conditioner(), _inputs()
    x, t = torch.randn(3, 1, 4, 8, 8, generator=_gen(3)), torch.tensor([10, 500, 900])
    none = {n: torch.zeros(3, dtype=torch.bool) for n in ("text", "image", "audio")}
    with torch.no_grad():
        dropped, _ = cond_enc(3, **inputs, keep=none)
        assert torch.allclose(model(x, t, cond=dropped), model(x, t), atol=1e-5)


def test_unconditioned_model_refuses_conditions():
    model = _unet(cond_dim=0)
    with pytest.raises(ValueError, match="without conditions"):
        model(torch.randn(1, 1, 2, 8, 8), torch.tensor([1]), cond=Cond(pooled=torch.zeros(1, 16)))


def test_per_frame_condition_must_match_frames():
    model = _unet()
    with pytest.raises(ValueError, match="per-frame condition"):
        model(torch.randn(1, 1, 4, 8, 8), torch.tensor([1]), cond=Cond(per_frame=torch.zeros(1, 3, 16)))


def test_frame_aligned_audio_reaches_its_frame():
    """Changing the last frame's audio vector changes the output at the last frame (per-frame FiLM)."""
    model, enc = _unet(temporal_attention=False), _conditioner()
    audio = torch.randn(1, 8, 8, generator=_gen(4))
    cond = enc(1, audio=audio)[0]
    other = Cond(per_frame=cond.per_frame.clone(), pooled=cond.pooled)
    other.per_frame[:, -1] += 1.0
    x = torch.randn(1, 1, 4, 8, 8, generator=_gen(5))
    with torch.no_grad():
        a, b = model(x, torch.tensor([300]), cond=cond), model(x, torch.tensor([300]), cond=other)
    assert not torch.allclose(a[:, :, -1], b[:, :, -1], atol=1e-4)


# ---- model directories ----


@pytest.mark.parametrize("text", ["gru", "minilm"])
def test_model_dir_with_each_text_encoder_reloads_identically(tmp_path, text):
    from kinema.pipeline import VideoPipeline

    model, enc = _unet(), _conditioner(text=text)
    config = {"model": {"channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "head_dim": 8,
                        "norm_groups": 4, "spatial_attention_levels": [1], "cond_dim": 16},
              "diffusion": {"num_steps": 100}, "data": {"size": 8, "num_frames": 4, "fps": 8, "audio_rate": 16000},
              "cond": {"text": text, "image": True, "audio": True, "n_mels": 8, "audio_steps_per_frame": 2}}
    save_model_dir(tmp_path, model, config, extra={"conditioner": enc},
                   vocab=enc.text.tokenizer.words if text == "gru" else None)
    assert (tmp_path / "text_vocab.json").is_file() == (text == "gru")
    pipe = VideoPipeline.from_pretrained(tmp_path, device="cpu", precision="no")
    x, t = torch.randn(3, 1, 4, 8, 8, generator=_gen(6)), torch.tensor([5, 50, 95])
    # the pipeline freezes its weights; on CPU, nn.GRU takes another kernel (other rounding) for frozen weights
    model.requires_grad_(False), enc.requires_grad_(False)
    with torch.no_grad():
        before = model(x, t, cond=enc(3, **_inputs())[0])
        after = pipe.model(x, t, cond=pipe.conditioner(3, **_inputs())[0])
    assert torch.equal(before, after)


def test_minilm_gives_token_states_and_a_normalised_sentence_embedding():
    from kinema.models.encoders import MiniLMTextEncoder

    enc = MiniLMTextEncoder(dim=16, max_tokens=12)
    states, mask, sentence = enc.features(["digit 3 moving up", "a much longer prompt about a seven", ""])
    assert states.shape[:2] == mask.shape and states.shape[-1] == 384
    assert torch.allclose(sentence[:2].norm(dim=-1), torch.ones(2), atol=1e-5)
    assert mask[2].sum() == 0 and sentence[2].abs().sum() == 0  # an empty prompt is no condition
    assert not any(p.requires_grad for p in enc._frozen[0].parameters())
    assert sum(p.numel() for p in enc.parameters()) == 2 * (384 * 16 + 16)  # only the projections are ours
    with pytest.warns(UserWarning, match="only the first 12"):
        enc.features(["one two three four five six seven eight nine ten eleven twelve thirteen"])


def test_image_encoder_kl_is_zero_only_at_the_prior():
    enc = _conditioner().image
    image = torch.rand(2, 1, 16, 16, generator=_gen(7))
    cond, kl = enc(image)
    assert cond.tokens.shape == (2, 1, 16) and cond.pooled.shape == (2, 16) and kl.shape == (2,)
    assert (kl > 0).all()
    with torch.no_grad():
        enc.moments.weight.zero_()
        enc.moments.bias.zero_()  # mu = 0, log var = 0: the latent is N(0, I) itself
    assert torch.equal(enc(image)[1], torch.zeros(2))
    with torch.no_grad():
        enc.moments.bias[:16] = 1.0  # mu = 1 per latent dim: KL = 16 * 1/2
    assert torch.allclose(enc(image)[1], torch.full((2,), 8.0))


def test_conditioner_rejects_conditions_it_was_not_trained_with():
    enc = Conditioner(CondConfig(text="none", image=True), 16, in_channels=1)
    with pytest.raises(ValueError, match="no text condition"):
        enc(1, text=["digit 1"])


def test_gru_text_needs_a_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        Conditioner(CondConfig(text="gru"), 16)


def test_long_prompt_warns_not_fails():
    enc = _conditioner()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cond, _ = enc(1, text=[" ".join(["digit"] * 40)])
    assert cond.tokens.shape[1] == 16 and any("only the first 16" in str(w.message) for w in caught)
    assert np.isfinite(cond.tokens.detach().numpy()).all()


def test_identity_loss_of_a_collapsed_encoder_is_log_batch():
    # every image gets the same latent: each clip's match is a guess among B, InfoNCE = ln B exactly
    torch.manual_seed(0)
    encoder = ImageEncoder(1, 16, 8)
    torch.nn.init.zeros_(encoder.moments.weight)
    first, other = torch.randn(5, 1, 16, 16), torch.randn(5, 1, 16, 16)
    assert identity_loss(encoder, first, other).item() == pytest.approx(math.log(5), abs=1e-5)


def test_identity_loss_prefers_the_right_pairs_and_needs_two_clips():
    torch.manual_seed(0)
    encoder = ImageEncoder(1, 16, 8)
    first = torch.randn(6, 1, 16, 16)
    right = identity_loss(encoder, first, first)  # each clip's other frame is itself: cosine 1 on the diagonal
    wrong = identity_loss(encoder, first, first.roll(1, dims=0))
    assert right.item() < math.log(6) < wrong.item()
    right.backward()
    assert encoder.convs[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 2 clips"):
        identity_loss(encoder, first[:1], first[:1])


def test_caption_loss_of_collapsed_encoders_counts_the_other_captions():
    # every image and every caption gets the same vector: each clip's match is a guess among itself and the clips
    # captioned otherwise (same-caption clips are not negatives), both ways: the mean of ln(1 + clips otherwise)
    enc = _conditioner()
    torch.nn.init.zeros_(enc.image.moments.weight)
    torch.nn.init.zeros_(enc.text.pool.weight)
    captions = [CAPTIONS[0], CAPTIONS[0], CAPTIONS[1], CAPTIONS[2]]
    first = torch.rand(4, 1, 16, 16, generator=_gen(3)) * 2 - 1
    expected = sum(math.log(1 + sum(c != d for d in captions)) for c in captions) / 4
    assert caption_loss(enc, first, captions).item() == pytest.approx(expected, abs=1e-5)
    assert caption_loss(enc, first, [CAPTIONS[1]] * 4).item() == pytest.approx(0.0, abs=1e-6)  # nothing to tell apart


def test_caption_loss_trains_the_image_side_only_and_refuses_what_it_cannot_use():
    enc = _conditioner()
    first = torch.rand(3, 1, 16, 16, generator=_gen(3)) * 2 - 1
    loss = caption_loss(enc, first, CAPTIONS)
    loss.backward()
    assert enc.image.convs[0].weight.grad.abs().sum() > 0 and enc.image.pool.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.text.parameters())
    with pytest.raises(ValueError, match="every clip captioned"):
        caption_loss(enc, first, ["", CAPTIONS[0], CAPTIONS[1]])
    with pytest.raises(ValueError, match="one caption per clip"):
        caption_loss(enc, first, CAPTIONS[:2])
    no_text = Conditioner(CondConfig(text="none", image=True), 16)
    with pytest.raises(ValueError, match="an image and a text encoder"):
        caption_loss(no_text, first, CAPTIONS)
    with pytest.raises(ValueError, match="cond.caption_weight"):
        CondConfig(text="none", image=True, caption_weight=0.1)
    with pytest.raises(ValueError, match="cond.caption_weight"):
        CondConfig(text="gru", image=False, caption_weight=0.1)
