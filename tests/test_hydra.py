"""Hydra recipe: heads, prefix layer cache, loss/estimates, tree building, drafter, tree decoding."""
from __future__ import annotations

import copy
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from accel.data.tokenizer import build_tokenizer
from accel.models.backbone import Adapter
from accel.models.tiny import make_model
from accel.recipes.hydra.drafter import HydraDrafter
from accel.recipes.hydra.heads import HydraHeads, PrefixState
from accel.decoding.tree_build import accept_lengths
from accel.recipes.hydra.loss import hydra_loss
from conftest import TINY  # noqa: E402 (the shared tiny model size)



@pytest.fixture(scope="module")
def adapter():
    tok = build_tokenizer()
    model = make_model("ar", tok, seed=3, **TINY).eval()
    return Adapter(model=model, tokenizer=tok, family="builtin", kind="ar", source="random:ar",
                   eos_ids=(tok.eos_token_id,))


def make_heads(adapter, prefix: bool, K: int = 3, seed: int = 0, scale: float = 0.3, config=None):
    """Heads with random (non-identity) weights, so every code path actually mixes its inputs."""
    torch.manual_seed(seed)
    m = adapter.model
    h = HydraHeads(32, m.config.vocab_size, K, 2, 0.0, prefix_config=(config or m.config) if prefix else None)
    h.init_from_lm_head(m.get_output_embeddings())
    with torch.no_grad():
        for p in h.parameters():
            p.add_(scale * torch.randn_like(p))
    return h.eval()


def test_init_is_base_predictor(adapter):
    """Zero-init residuals + lm_head copy: every head (and the prefix layer) starts as the base."""
    m = adapter.model
    h = HydraHeads(32, m.config.vocab_size, 3, 2, prefix_config=m.config)
    h.init_from_lm_head(m.get_output_embeddings())
    x = torch.randn(2, 5, 32)
    valid = torch.ones(2, 5, dtype=torch.bool)
    pos = torch.arange(5)[None].expand(2, 5)
    assert torch.allclose(h.context(x, valid, pos), x, atol=1e-6)
    out = h.teacher_forced_logits(x, torch.randn(2, 5, 32))
    assert [o.shape[1] for o in out] == [3, 2, 1]
    for k, o in enumerate(out, start=1):
        assert torch.allclose(o, m.get_output_embeddings()(x[:, :5 - k - 1]), atol=1e-5)
    layers = [n for n, _ in h.named_modules() if n.endswith("linear")]
    assert len(layers) == 3  # each residual layer its own module (2 layers/head -> 1 ResBlock each)


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_prefix_state_matches_full_context(adapter, kv_heads):
    """The prefix layer's own KV cache, fed ragged chunks with holes, equals one full pass (also with GQA)."""
    cfg = copy.deepcopy(adapter.model.config)
    cfg.num_key_value_heads = kv_heads
    h = make_heads(adapter, prefix=True, config=cfg)
    torch.manual_seed(1)
    B, H = 2, 32
    full = torch.randn(B, 9, H)
    # row 0: 2 padding then 7 tokens; row 1: 9 tokens
    valid = torch.ones(B, 9, dtype=torch.bool)
    valid[0, :2] = False
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    ref = h.prefix(full, valid, pos)
    st = PrefixState(h.prefix)
    st.push(full[:, :5], valid[:, :5], pos[:, :5])
    # then row 0 gets tokens 5,6 (+1 hole), row 1 gets token 5 only (+2 holes)
    chunk = torch.stack([torch.cat([full[0, 5:7], torch.zeros(1, H)]), torch.cat([full[1, 5:6], torch.zeros(2, H)])])
    cval = torch.tensor([[True, True, False], [True, False, False]])
    cpos = torch.stack([pos[0, 5:8], torch.tensor([pos[1, 5], 0, 0])])
    last = st.push(chunk, cval, cpos)
    assert torch.allclose(last[0], ref[0, 6], atol=1e-5)
    assert torch.allclose(last[1], ref[1, 5], atol=1e-5)


def test_drafter_grows_tree_from_parent_paths(adapter):
    h = make_heads(adapter, prefix=False)
    emb = adapter.model.get_input_embeddings()
    d = HydraDrafter(h, emb)
    from accel.decoding.tree import TreeSpec
    tree = TreeSpec([(0,), (1,), (0, 0), (1, 0), (0, 0, 1)])
    hl = torch.randn(2, 32)
    root = torch.tensor([7, 9])
    cand = d.draft(hl, root, tree)
    assert cand.shape == (2, 6) and cand[:, 0].tolist() == [7, 9]
    with torch.no_grad():
        top1 = h.heads[0](hl, emb(root)[:, None]).topk(2, -1).indices
        assert cand[:, 1].tolist() == top1[:, 0].tolist() and cand[:, 2].tolist() == top1[:, 1].tolist()
        for node, parent in ((3, 1), (4, 2)):  # (0,0) under (0,), (1,0) under (1,)
            lg = h.heads[1](hl, emb(torch.stack([root, cand[:, parent]], 1)))
            assert cand[:, node].tolist() == lg.argmax(-1).tolist()
        lg = h.heads[2](hl, emb(torch.stack([root, cand[:, 1], cand[:, 3]], 1)))
        assert cand[:, 5].tolist() == lg.topk(2, -1).indices[:, 1].tolist()
    with pytest.raises(ValueError, match="levels deep"):
        d.draft(hl, root, TreeSpec.chain(4))


def test_losses_train_heads_only(adapter):
    h = make_heads(adapter, prefix=True, scale=0.05)
    h.train()
    ids = torch.randint(5, 40, (2, 10))
    labels = ids.clone()
    labels[:, :4] = -100
    valid = torch.ones_like(ids, dtype=torch.bool)
    x = torch.randn(2, 10, 32)
    base_logits = torch.randn(2, 10, adapter.model.config.vocab_size)
    for mode in ("ce", "distill"):
        h.zero_grad()
        emb = torch.randn(2, 10, 32)
        logits = h.teacher_forced_logits(h.context(x, valid, (valid.cumsum(1) - 1)), emb)
        loss, per = hydra_loss(logits, ids, labels, valid, base_logits, mode)
        assert torch.isfinite(loss) and len(per) == 3 and abs(sum(per) - float(loss.detach())) < 1e-4
        loss.backward()
        assert h.prefix.layer.self_attn.q_proj.weight.grad is not None
    # distill against a one-hot teacher equals CE on its argmax
    nxt = torch.cat([ids[:, 1:], ids[:, :1]], 1)  # base "distribution" at j = one-hot of token j+1
    onehot = torch.full_like(base_logits, -1e4).scatter(-1, nxt[..., None], 0.0)
    logits = [torch.randn(2, 10 - k - 1, base_logits.shape[-1]) for k in (1, 2, 3)]
    a, _ = hydra_loss(logits, ids, labels, valid, onehot, "distill")
    b, _ = hydra_loss(logits, ids, labels, valid, onehot, "ce")
    assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="loss="):
        hydra_loss(logits, ids, labels, valid, base_logits, "kl")


def test_accept_lengths_chain_and_tree():
    # one position, 3 heads: head1 rank 0, head2 rank 1, head3 rank 0
    ranks = torch.tensor([[[0, 1, 0]]])
    usable = torch.ones_like(ranks, dtype=torch.bool)
    assert accept_lengths(ranks, usable).tolist() == [[2]]
    assert accept_lengths(ranks, usable, [(0,), (0, 0), (0, 1), (0, 1, 0)]).tolist() == [[4]]
    assert accept_lengths(ranks, usable, [(0,), (1,), (0, 0)]).tolist() == [[2]]
    usable[..., 1] = False  # head 2's input was not what the base would emit: the chain stops there
    assert accept_lengths(ranks, usable, [(0,), (0, 1), (0, 1, 0)]).tolist() == [[2]]


@pytest.mark.parametrize("prefix", [False, True])
def test_tree_decoding_identical_to_greedy(adapter, prefix):
    """Greedy acceptance reproduces plain greedy decoding for ragged batches, Hydra and Hydra++."""
    from accel.decoding.ar import generate_greedy
    from accel.decoding.tree import TreeSpec, generate_tree
    h = make_heads(adapter, prefix=prefix)
    tok = adapter.tokenizer
    prompts = [tok(s, add_special_tokens=False)["input_ids"] for s in ("copy 1 2 3", "sort 9 1", "reverse 4 4 2 7 1")]
    ref = generate_greedy(adapter, prompts, max_new_tokens=20)
    d = HydraDrafter(h, adapter.model.get_input_embeddings())
    out = generate_tree(adapter, d, TreeSpec([(0,), (1,), (0, 0), (0, 1), (0, 0, 0)]), prompts, max_new_tokens=20)
    assert out.tokens == ref.tokens
    assert out.extra["accepted_per_forward"] >= 1.0


def test_prefix_drafter_sees_every_accepted_token(adapter):
    """observe() receives exactly the accepted tokens' base hidden states, at their positions."""
    from accel.decoding.tree import TreeSpec, generate_tree
    h = make_heads(adapter, prefix=True)
    seen = []

    class Recording(HydraDrafter):
        def observe(self, hidden, valid, position_ids, tokens, prefill=False):
            seen.append((hidden, valid, position_ids, tokens))
            super().observe(hidden, valid, position_ids, tokens, prefill)

    tok = adapter.tokenizer
    prompt = tok("copy 1 2 3", add_special_tokens=False)["input_ids"]
    out = generate_tree(adapter, Recording(h, adapter.model.get_input_embeddings()), TreeSpec.chain(3), [prompt],
                        max_new_tokens=12)
    hs = torch.cat([s[0][0][s[1][0]] for s in seen])
    ps = torch.cat([s[2][0][s[1][0]] for s in seen])
    ts = torch.cat([s[3][0][s[1][0]] for s in seen])
    seq = torch.tensor([prompt + out.tokens[0]])
    with torch.no_grad():
        full = adapter.model.get_decoder()(input_ids=seq).last_hidden_state[0]
    n = hs.shape[0]
    assert ps.tolist() == list(range(n))
    assert ts.tolist() == (prompt + out.tokens[0])[:n]
    assert torch.allclose(hs, full[:n], atol=1e-4)
