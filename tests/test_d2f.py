"""D2F mechanics on tiny random models: block-causal attention, noising, the loss, pipelined decoding."""
import copy

import pytest
import torch

from accel.data.tokenizer import chat_prompt_ids
from accel.models.masks import block_causal_mask, full_mask, position_ids
from accel.models.backbone import Adapter
from accel.models.tiny import make_model
from accel.recipes.d2f.decode import PRESETS, forward_logits, generate_d2f, get_preset
from accel.recipes.d2f.loss import distill_loss, make_loss
from accel.recipes.d2f.noise import block_ratios, noise_mask
from conftest import TINY  # noqa: E402 (the shared tiny model size)



def _adapter(tok, seed=0, shift=False):
    m = make_model("dllm", tok, seed=seed, shift_logits=shift, **TINY).eval()
    return Adapter(model=m, tokenizer=tok, family="builtin", kind="dllm", source="test", mask_id=tok.mask_token_id,
                   shift_logits=shift, eos_ids=(tok.eos_token_id,))


def _explicit_mask(valid, P, blk, q_start=0):
    B, L = valid.shape
    out = torch.zeros(B, 1, L - q_start, L, dtype=torch.bool)
    for b in range(B):
        for qi, q in enumerate(range(q_start, L)):
            qb = -1 if q < P else (q - P) // blk
            for k in range(L):
                kb = -1 if k < P else (k - P) // blk
                out[b, 0, qi, k] = bool(valid[b, k]) and kb <= qb
    return out


# ------------------------------------------------------------------ block-causal attention
def test_block_causal_mask_matches_explicit():
    valid = torch.ones(2, 3 + 10, dtype=torch.bool)
    valid[1, :2] = False  # left padding
    for q_start in (0, 3, 7):
        assert torch.equal(block_causal_mask(valid, 3, 4, q_start=q_start), _explicit_mask(valid, 3, 4, q_start))


@pytest.mark.parametrize("shift", [False, True])
def test_block_logits_ignore_later_blocks(tok, shift):
    """Through the model: changing block 2 leaves the predictions of blocks 0-1 unchanged under the
    block-causal mask, but not under full attention (so the check can fail); and every block
    position's prediction sees its whole block (shifted logits included)."""
    a = _adapter(tok, seed=1, shift=shift)
    P, blk, V = 5, 4, len(tok)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(5, V, (2, P + 3 * blk), generator=g)
    valid = torch.ones_like(x, dtype=torch.bool)
    valid[1, :2] = False
    y = x.clone()
    y[:, P + 2 * blk:] = torch.randint(5, V, (2, blk), generator=g)
    pos = position_ids(valid)
    keep = P + 2 * blk
    z = x.clone()
    z[:, P + 2 * blk - 2] = (x[:, P + 2 * blk - 2] - 4) % (V - 5) + 5  # one token late in block 1
    m = block_causal_mask(valid, P, blk, shift=shift)
    with torch.no_grad():
        lx, _ = forward_logits(a.model, "builtin", shift, x, m, pos)
        ly, _ = forward_logits(a.model, "builtin", shift, y, m, pos)
        lz, _ = forward_logits(a.model, "builtin", shift, z, m, pos)
        fx, _ = forward_logits(a.model, "builtin", shift, x, full_mask(valid), pos)
        fy, _ = forward_logits(a.model, "builtin", shift, y, full_mask(valid), pos)
    assert torch.allclose(lx[:, :keep], ly[:, :keep], atol=1e-5)
    assert not torch.allclose(lx[:, keep:], ly[:, keep:], atol=1e-3)
    assert not torch.allclose(fx[:, :keep], fy[:, :keep], atol=1e-5)
    # block 1's FIRST prediction reacts to block 1's last token; block 0's predictions do not
    first1 = P + blk
    assert not torch.allclose(lx[:, first1], lz[:, first1], atol=1e-4)
    assert torch.allclose(lx[:, :first1], lz[:, :first1], atol=1e-5)


def test_shifted_block_causal_mask_groups_by_predicted_token():
    valid = torch.ones(1, 3 + 8, dtype=torch.bool)
    m = block_causal_mask(valid, 3, 4, shift=True)[0, 0]
    assert torch.equal(m, block_causal_mask(valid, 2, 4)[0, 0])
    assert m[2, 3:6].all() and not m[2, 6:].any()  # the last prompt token sees block 0 (tokens 3..6)
    assert not m[1, 2:].any()  # earlier prompt tokens see the prompt only


def test_llada_family_gets_attention_bias():
    seen = {}

    class Fake(torch.nn.Module):
        def forward(self, input_ids, attention_bias=None, **kw):
            seen.update(kw, bias=attention_bias)
            return type("O", (), {"logits": torch.zeros(*input_ids.shape, 3)})()
    mask = block_causal_mask(torch.ones(1, 6, dtype=torch.bool), 2, 2)
    forward_logits(Fake(), "llada", False, torch.zeros(1, 6, dtype=torch.long), mask, None)
    assert not seen.get("attention_mask") and "position_ids" not in seen and torch.equal(seen["bias"], mask)
    with pytest.raises(ValueError, match="no KV cache"):
        forward_logits(Fake(), "llada", False, torch.zeros(1, 6, dtype=torch.long), mask, None, use_cache=True)


# ------------------------------------------------------------------ noising and loss
def test_block_ratios_monotone_and_bounded():
    g = torch.Generator().manual_seed(0)
    r = block_ratios(500, 4, 0.2, 0.7, generator=g)
    assert r.shape == (500, 4)
    assert (r[:, 1:] >= r[:, :-1]).all() and (r >= 0.2).all() and (r <= 0.7 + 1e-6).all()
    assert r[:, 0].max() > 0.6 and r[:, 0].min() < 0.3  # p0 spans U(0.2, 0.7)
    assert (r[:, -1] - r[:, 0]).max() > 0.1  # later blocks do get noisier
    masked, per_pos = noise_mask(300, 40, 16, generator=torch.Generator().manual_seed(1))
    assert per_pos.shape == (300, 40) and masked.any(1).all()
    assert torch.equal(per_pos[:, :16], per_pos[:, :1].expand(-1, 16))  # one ratio per block
    emp = masked.float().mean()
    assert abs(float(emp) - float(per_pos.mean())) < 0.03


def test_distill_loss_value():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    masked = torch.tensor([[True, False, True], [False, False, True]])
    ratio = torch.tensor([[0.5] * 3, [0.25] * 3])
    loss, m = distill_loss(s, t, masked, ratio)
    expect = 0.0
    for b, i in [(0, 0), (0, 2), (1, 2)]:
        expect += -(t[b, i].softmax(-1) * s[b, i].log_softmax(-1)).sum() / ratio[b, i]
    assert torch.allclose(loss, expect / 6)
    _, m0 = distill_loss(t, t, masked, ratio)
    assert abs(m0["kl"]) < 1e-5 and m0["agree"] == 1.0


def test_loss_teacher_is_base_under_full_attention(tok, monkeypatch):
    """Student = base + LoRA under the block-causal mask (gets the gradient); teacher = the same
    weights with the adapter disabled under full attention (equals the untouched base)."""
    from accel.recipes.d2f import loss as loss_mod
    from accel.recipes.dparallel.loss import make_collator
    from accel.trainers.lora import apply_lora
    a = _adapter(tok, seed=2)
    base = copy.deepcopy(a.model)
    model = apply_lora(a.model, 4, 8, 0.0, ["q_proj", "v_proj"])
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)  # a non-trivial adapter
    pairs = [{"prompt_ids": chat_prompt_ids(tok, "copy 1 2"), "response_ids": [5, 6, 7]},
             {"prompt_ids": chat_prompt_ids(tok, "sort 3 1 2 9"), "response_ids": [8, 9]}]
    batch = make_collator(a, 32)(pairs)
    captured = {}
    real = loss_mod.distill_loss

    def spy(s, t, masked, ratio):
        captured.update(s=s, t=t)
        return real(s, t, masked, ratio)
    monkeypatch.setattr(loss_mod, "distill_loss", spy)
    torch.manual_seed(0)
    loss, metrics = make_loss(a, 16)(model, batch)
    valid = batch["valid"]
    P = valid.shape[1] - 32
    torch.manual_seed(0)
    masked, _ = noise_mask(2, 32, 16)
    inp = batch["ids"].clone()
    inp[:, P:] = torch.where(masked, tok.mask_token_id, inp[:, P:])
    with torch.no_grad():
        want_t = base(input_ids=inp, attention_mask=full_mask(valid), position_ids=position_ids(valid)).logits
        base_bc = base(input_ids=inp, attention_mask=block_causal_mask(valid, P, 16, shift=a.shift_logits),
                       position_ids=position_ids(valid)).logits
    assert torch.allclose(captured["t"], want_t[:, P:], atol=1e-5)
    assert not torch.allclose(captured["s"], base_bc[:, P:], atol=1e-3)  # the adapter is on for the student
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values())
    assert set(metrics) >= {"ce", "kl", "agree", "masked_frac"}


# ------------------------------------------------------------------ pipelined decoding
def _prompts(tok):
    return [chat_prompt_ids(tok, "reverse 1 2 3"), chat_prompt_ids(tok, "copy 4 5 6 7 8 9 1 2 3 4"),
            chat_prompt_ids(tok, "sort 9 8")]


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("taus", [(0.1, 0.95, 0.9), (0.25, 0.5, 0.06), (0.0, 0.3, 0.08), (1.0, 1.0, 1.0)])
def test_cached_equals_uncached(tok, shift, taus):
    a = _adapter(tok, seed=3, shift=shift)
    tau_add, tau_act, tau_conf = taus
    kw = dict(gen_len=48, block_len=8, tau_add=tau_add, tau_act=tau_act, tau_conf=tau_conf)
    r1 = generate_d2f(a, _prompts(tok), cache=True, **kw)
    r2 = generate_d2f(a, _prompts(tok), cache=False, **kw)
    assert r1.tokens == r2.tokens and r1.nfe == r2.nfe
    assert r1.extra["tokens_fed"] < r2.extra["tokens_fed"]  # the cache feeds only the tail
    if taus == (1.0, 1.0, 1.0):  # nothing passes conf > 1: one token per step, one block at a time
        assert r1.nfe == [48] * 3 and r1.extra["max_blocks"] == 1


def test_pipeline_runs_blocks_in_parallel_and_batch_matches_single(tok):
    a = _adapter(tok, seed=3)
    kw = dict(gen_len=48, block_len=8, tau_add=0.0, tau_act=0.3, tau_conf=0.06)
    res = generate_d2f(a, _prompts(tok), **kw)
    assert res.extra["max_blocks"] >= 2
    assert all(n < 48 for n in res.nfe)  # parallel decoding: fewer forwards than tokens
    for i, p in enumerate(_prompts(tok)):
        one = generate_d2f(a, [p], **kw)
        assert one.tokens[0] == res.tokens[i] and one.nfe[0] == res.nfe[i]


def test_end_token_stops_rows(tok):
    """A model that always predicts the end token: one forward, output = [eos], no blocks added."""
    a = _adapter(tok, seed=4)
    real = a.model.forward

    def fwd(*args, **kw):
        out = real(*args, **kw)
        out.logits[..., tok.eos_token_id] += 100.0
        return out
    a.model.forward = fwd
    for cache in (True, False):
        res = generate_d2f(a, _prompts(tok), gen_len=64, block_len=16, cache=cache)
        assert res.tokens == [[tok.eos_token_id]] * 3 and res.nfe == [1, 1, 1]


def test_bad_params(tok):
    a = _adapter(tok)
    with pytest.raises(ValueError, match="multiple of block_len"):
        generate_d2f(a, _prompts(tok), gen_len=50, block_len=16)
    with pytest.raises(ValueError, match="tau_conf"):
        generate_d2f(a, _prompts(tok), gen_len=32, block_len=16, tau_conf=1.5)
    with pytest.raises(ValueError, match="unknown D2F preset"):
        get_preset("gsm9k")
    assert set(PRESETS["gsm8k"]) == {"block_len", "tau_add", "tau_act", "tau_conf"}
