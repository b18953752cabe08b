"""dLLM samplers: LLaDA vanilla (exactness), threshold rules, the block loop's contract, KV caches."""
import pytest
import torch

from accel.data.tokenizer import chat_prompt_ids
from accel.decoding.cache import BlockCache
from accel.decoding.dllm import generate_blockwise, generate_threshold, generate_vanilla, init_canvas
from accel.decoding.policies import BlockDecision, BlockState, confidence_policy, entropy_policy
from accel.models.masks import full_mask, position_ids
from accel.models.backbone import Adapter
from accel.models.tiny import make_model
from conftest import TINY  # noqa: E402 (the shared tiny model size)

PROMPTS = ["copy 123", "reverse 98765", "calc 12+3-4", "sort 3412", "insert 5 at 1 in 4321", "copy 7",
           "remove 3 from 12345", "reverse 11"]


def _adapter(tok, shift=False, no_mask_pred=True, seed=0):
    # initializer_range 1.0: peaked distributions, so thresholds actually unmask several tokens
    m = make_model("dllm", tok, seed=seed, shift_logits=shift, initializer_range=1.0, **TINY).eval()
    if no_mask_pred:  # like a trained dLLM: [MASK] is never the prediction
        def hook(mod, inp, out):
            out[..., tok.mask_token_id] = -float("inf")
            return out
        m.lm_head.register_forward_hook(hook)
    return Adapter(m, tok, "builtin", "dllm", "test", mask_id=tok.mask_token_id, shift_logits=shift,
                   eos_ids=(tok.eos_token_id,))


@pytest.fixture(scope="module")
def adapter(tok):
    return _adapter(tok)


@pytest.fixture(scope="module")
def prompts(tok):
    return [chat_prompt_ids(tok, p) for p in PROMPTS]


# ------------------------------------------------------------------ vanilla (LLaDA) exactness
def llada_generate(model, prompt, steps, gen_length, block_length, mask_id):
    """The published LLaDA `generate`, unbatched, T=0, cfg=0, written from docs/baselines.md."""
    P = len(prompt)
    x = torch.full((1, P + gen_length), mask_id, dtype=torch.long)
    x[0, :P] = torch.tensor(prompt)
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    nfe = 0
    for nb in range(num_blocks):
        block_mask = x[:, P + nb * block_length: P + (nb + 1) * block_length] == mask_id
        count = int(block_mask.sum())
        schedule = [count // steps_per_block + (1 if i < count % steps_per_block else 0)
                    for i in range(steps_per_block)]
        for i in range(steps_per_block):
            mask_index = x == mask_id
            L = x.shape[1]
            logits = model(input_ids=x, attention_mask=torch.ones(1, 1, L, L, dtype=torch.bool)).logits
            nfe += 1
            x0 = logits.argmax(-1)
            p = torch.softmax(logits.to(torch.float64), dim=-1)
            x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)
            x0_p[:, P + (nb + 1) * block_length:] = -float("inf")
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, torch.tensor(-float("inf"), dtype=torch.float64))
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            _, select = torch.topk(confidence[0], k=schedule[i])
            transfer[0, select] = True
            x[transfer] = x0[transfer]
    return x[0, P:].tolist(), nfe


def _trim(row, eos):
    return row[:row.index(eos) + 1] if eos in row else row


@pytest.mark.parametrize("steps", [16, 6])
def test_vanilla_matches_published_llada(tok, prompts, steps):
    a = _adapter(tok, no_mask_pred=False, seed=3)
    res = generate_vanilla(a, prompts[:3], gen_len=16, block_len=8, steps=steps)
    for p, got, nfe in zip(prompts[:3], res.tokens, res.nfe):
        want, want_nfe = llada_generate(a.model, p, steps, 16, 8, tok.mask_token_id)
        assert got == _trim(want, tok.eos_token_id)
        assert nfe == want_nfe == steps


def test_vanilla_batched_equals_unbatched(adapter, prompts):
    assert len({len(p) for p in prompts}) > 3
    batched = generate_vanilla(adapter, prompts, gen_len=16, block_len=8)
    for i, p in enumerate(prompts):
        one = generate_vanilla(adapter, [p], gen_len=16, block_len=8)
        assert one.tokens[0] == batched.tokens[i]
        assert one.nfe[0] == batched.nfe[i] == 16


# ------------------------------------------------------------------ threshold rules
@pytest.mark.parametrize("cache", [None, "prefix", "dual"])
def test_threshold_above_one_is_one_token_per_step(adapter, prompts, cache):
    v = generate_vanilla(adapter, prompts[:4], gen_len=16, block_len=8)
    t = generate_threshold(adapter, prompts[:4], gen_len=16, block_len=8, threshold=1.01, cache=cache,
                           early_exit=False)
    assert t.nfe == v.nfe == [16] * 4  # with or without a cache: one forward per token
    if cache is None:
        assert t.tokens == v.tokens


def test_threshold_saves_forwards(adapter, prompts):
    v = generate_vanilla(adapter, prompts, gen_len=32, block_len=8)
    for kw in (dict(threshold=0.9), dict(factor=1.0), dict(rule="entropy", threshold=0.5)):
        t = generate_threshold(adapter, prompts, gen_len=32, block_len=8, **kw)
        assert all(a <= b for a, b in zip(t.nfe, v.nfe)), kw
        assert sum(t.nfe) < sum(v.nfe), kw
        assert all(len(r) <= 32 and tok_ok(r, adapter) for r in t.tokens)


def tok_ok(row, adapter):
    return adapter.mask_id not in row and all(0 <= t < len(adapter.tokenizer) for t in row)


def test_threshold_batched_equals_unbatched(adapter, prompts):
    for cache in (None, "prefix", "dual"):
        b = generate_threshold(adapter, prompts[:5], gen_len=16, block_len=8, cache=cache)
        for i, p in enumerate(prompts[:5]):
            one = generate_threshold(adapter, [p], gen_len=16, block_len=8, cache=cache)
            assert (one.tokens[0], one.nfe[0]) == (b.tokens[i], b.nfe[i]), (cache, i)


def test_max_steps_caps_forwards_per_block(adapter, prompts):
    t = generate_threshold(adapter, prompts[:3], gen_len=16, block_len=8, threshold=1.01, max_steps=3)
    assert all(n <= 2 * 3 for n in t.nfe)
    assert all(tok_ok(r, adapter) for r in t.tokens)


def test_temperature_is_seeded(adapter, prompts):
    runs = [generate_threshold(adapter, prompts[:3], gen_len=16, block_len=8, temperature=1.0,
                               generator=torch.Generator().manual_seed(7)).tokens for _ in range(2)]
    assert runs[0] == runs[1]


def _state(conf, masked, ent=None):
    conf = torch.tensor([conf])
    masked = torch.tensor([masked])
    ent = torch.zeros_like(conf) if ent is None else torch.tensor([ent])
    return BlockState(logits=None, x0=torch.zeros_like(masked, dtype=torch.long), confidence=conf, entropy=ent,
                      masked=masked, rows=torch.tensor([0]), x=None, prompt_len=0, block_start=0, block_index=0,
                      step_in_block=0)


def test_policies_on_handmade_states():
    st = _state([0.99, 0.8, 0.7, 0.95, 0.1], [True, True, True, False, True])
    assert confidence_policy(0.9)(st).transfer.tolist() == [[True, False, False, False, False]]
    assert confidence_policy(0.75)(st).transfer.tolist() == [[True, True, False, False, False]]
    # factor f=1: n=1 needs >= 0.5 (0.99), n=2 >= 0.667 (0.8), n=3 >= 0.75 (0.7 fails) -> n = 2
    assert confidence_policy(factor=1.0)(st).transfer.tolist() == [[True, True, False, False, False]]
    # at least one even when nothing passes
    low = _state([0.2, 0.3], [True, True])
    assert confidence_policy(0.9)(low).transfer.tolist() == [[False, True]]
    assert confidence_policy(factor=0.01)(low).transfer.tolist() == [[False, True]]
    ent = _state([0.5] * 4, [True, True, False, True], ent=[0.9, 0.6, 0.0, 0.3])
    assert entropy_policy(0.5)(ent).transfer.tolist() == [[False, False, False, True]]
    assert entropy_policy(0.1)(ent).transfer.tolist() == [[False, False, False, True]]  # lowest always
    assert entropy_policy(0.7)(ent).transfer.tolist() == [[False, True, False, True]]


# ------------------------------------------------------------------ block loop contract
def test_loop_guards_progress_and_states(adapter, prompts):
    seen = []

    def lazy(st: BlockState) -> BlockDecision:  # never asks for anything: the loop must still progress
        seen.append((st.block_index, st.step_in_block, st.logits.shape, st.masked.sum().item()))
        assert st.x0.shape == st.confidence.shape == st.entropy.shape == st.masked.shape
        return BlockDecision(torch.zeros_like(st.masked))

    r = generate_blockwise(adapter, prompts[:2], 16, 8, lazy, early_exit=False)
    assert r.nfe == [16, 16]
    assert seen[0][:3] == (0, 0, (2, 8, len(adapter.tokenizer))) and seen[8][:2] == (1, 0)
    assert [s[3] for s in seen[:8]] == [16 - 2 * i for i in range(8)]


def test_end_at_truncates_and_crops_canvas(adapter, prompts):
    eos = adapter.eos_ids[0]

    def ends_at_2(st: BlockState) -> BlockDecision:
        end = torch.full((len(st.rows),), -1, dtype=torch.long)
        if st.block_index == 0 and st.step_in_block == 0:
            end[:] = st.block_start + 2
        return BlockDecision(torch.zeros_like(st.masked), end)

    r = generate_blockwise(adapter, prompts[:3], 32, 8, ends_at_2, early_exit=False)
    _, _, P = init_canvas(adapter, prompts[:3], 32)
    assert r.extra["canvas_len"] == P + 8  # cropped to the block boundary after the last end
    assert all(len(t) <= 3 and t[-1] == eos for t in r.tokens)
    assert all(n <= 2 for n in r.nfe)  # step 0 + at most one more for the 2 positions before the end

    def bad(st):
        return BlockDecision(torch.zeros_like(st.masked), torch.zeros(len(st.rows), dtype=torch.long))
    with pytest.raises(ValueError, match="end_at"):
        generate_blockwise(adapter, prompts[:1], 16, 8, bad)


def test_early_exit_saves_forwards_without_changing_output(tok, prompts):
    a = _adapter(tok)
    eos, P = a.eos_ids[0], max(len(p) for p in prompts[:4])

    def boost_eos(mod, inp, out):  # response positions >= 5 strongly prefer the end token
        if out.shape[1] > P:
            out[:, P + 5:, eos] += 50.0
        return out

    a.model.lm_head.register_forward_hook(boost_eos)
    on = generate_threshold(a, prompts[:4], gen_len=32, block_len=8)
    off = generate_threshold(a, prompts[:4], gen_len=32, block_len=8, early_exit=False)
    assert on.tokens == off.tokens
    assert all(t[-1] == eos and len(t) <= 6 for t in on.tokens)
    # off: each later block is all end tokens (one confident forward each); on: never forwarded
    assert all(n <= 8 for n in on.nfe) and all(a <= b - 3 for a, b in zip(on.nfe, off.nfe))
    assert on.extra["canvas_len"] == P + 8


def test_bad_arguments(adapter, prompts):
    with pytest.raises(ValueError, match="multiple of block_len"):
        generate_threshold(adapter, prompts[:1], gen_len=20, block_len=8)
    with pytest.raises(ValueError, match="cache"):
        generate_threshold(adapter, prompts[:1], gen_len=16, block_len=8, cache="full")
    with pytest.raises(ValueError, match="rule"):
        generate_threshold(adapter, prompts[:1], gen_len=16, block_len=8, rule="margin")
    with pytest.raises(ValueError, match="factor"):
        generate_threshold(adapter, prompts[:1], gen_len=16, block_len=8, rule="entropy", factor=1.0)


# ------------------------------------------------------------------ KV caches
@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("shift", [False, True])
def test_cached_block_forward_matches_full_forward(tok, prompts, mode, shift):
    a = _adapter(tok, shift=shift)
    x, valid, P = init_canvas(a, prompts[:4], 24)
    g = torch.Generator().manual_seed(0)
    x[:, P:P + 8] = torch.randint(7, 40, (4, 8), generator=g)  # block 0 decoded, block 1 partly
    x[:, P + 9] = 10
    pos = position_ids(valid)
    s, e = P + 8, P + 16
    full = a.dllm_logits(x, full_mask(valid), pos)[0][:, s:e]
    bc = BlockCache(a, mode)
    first = bc.logits(x, valid, pos, s, e, first=True)
    assert torch.equal(first, full)
    for _ in range(2):  # the cache is cropped back after each step, so a repeat is exact too
        torch.testing.assert_close(bc.logits(x, valid, pos, s, e, first=False), full, rtol=1e-4, atol=1e-4)
    rows = torch.tensor([1, 3])  # rows drop out: the cache narrows to them
    torch.testing.assert_close(bc.logits(x, valid, pos, s, e, first=False, rows=rows), full[rows],
                               rtol=1e-4, atol=1e-4)


def test_cached_step_sees_new_block_tokens(tok, prompts):
    """After a change inside the block, prefix and dual differ from a stale full forward only via the cache."""
    a = _adapter(tok)
    x, valid, P = init_canvas(a, prompts[:2], 16)
    pos = position_ids(valid)
    s, e = P, P + 8
    bc = BlockCache(a, "dual")
    before = bc.logits(x, valid, pos, s, e, first=True)
    x[:, P + 3] = 12
    after = bc.logits(x, valid, pos, s, e, first=False)
    assert not torch.allclose(before, after)
    pre = BlockCache(a, "prefix")
    pre.logits(x, valid, pos, s, e, first=True)  # prefix = prompt only: exact for the first block
    full = a.dllm_logits(x, full_mask(valid), pos)[0][:, s:e]
    torch.testing.assert_close(pre.logits(x, valid, pos, s, e, first=False), full, rtol=1e-4, atol=1e-4)


def test_shifted_model_decodes_with_caches(tok, prompts):
    a = _adapter(tok, shift=True)
    for cache in (None, "prefix", "dual"):
        r = generate_threshold(a, prompts[:3], gen_len=16, block_len=8, cache=cache)
        assert all(tok_ok(t, a) for t in r.tokens) and all(1 <= n <= 16 for n in r.nfe)
