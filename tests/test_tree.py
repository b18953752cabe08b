"""Tree verification: TreeSpec buffers, greedy identity with plain greedy decoding (batch 1 and 4,
tiny random models and the built-in AR teacher), KV compaction with rows accepting different lengths."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

from accel.data.tokenizer import build_tokenizer, chat_prompt_ids
from accel.decoding.ar import generate_greedy
from accel.decoding.tree import TreeSpec, generate_tree, topk_candidates
from accel.models.backbone import Adapter, load_backbone
from accel.models.tiny import make_model
from accel.models.weights import builtin_dir

torch.set_num_threads(1)

PROMPTS = ["calc 12+7=", "reverse 3 1 4 1 5", "sort 9 2 7", "copy 5 5 1 2 3 8", "pick any distinct digits"]


def tiny_adapter(seed=0):
    tok = build_tokenizer()
    model = make_model("ar", tok, seed=seed, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=2, intermediate_size=64).eval()
    return Adapter(model=model, tokenizer=tok, family="builtin", kind="ar", source="random:ar",
                   eos_ids=(tok.eos_token_id,))


def prompts_for(adapter, n):
    return [chat_prompt_ids(adapter.tokenizer, p) for p in PROMPTS[:n]]


class OracleDrafter:
    """Proposes the known greedy continuation correctly up to a planned depth per call (wrong
    tokens elsewhere), so the accepted length of every forward is known in advance."""
    num_heads = 4

    def __init__(self, refs, vocab, seed=0, strict=True):
        self.refs, self.V, self.strict = refs, vocab, strict
        self.pos = [0] * len(refs)
        self.g = torch.Generator().manual_seed(seed)
        self.planned = []

    def _ref(self, b, i):
        r = self.refs[b]
        return r[i] if i < len(r) else 0

    def draft(self, hidden_last, root_token, tree):
        bufs = tree.buffers()
        B, D = root_token.shape[0], tree.max_depth
        depths = torch.randint(0, D + 1, (B,), generator=self.g).tolist()
        self.planned.append(depths)
        out = torch.zeros(B, tree.num_nodes + 1, dtype=torch.long)
        out[:, 0] = root_token
        for b in range(B):
            assert not self.strict or int(root_token[b]) == self._ref(b, self.pos[b]) or self.pos[b] >= len(self.refs[b])
            for n, p in enumerate(tree.paths, 1):
                d = len(p)
                truth = self._ref(b, self.pos[b] + d)
                good = all(c == 0 for c in p) and d <= depths[b]
                out[b, n] = truth if good else (truth + 1 + p[-1]) % self.V
            self.pos[b] += depths[b] + 1
        del bufs
        return out


TREE = TreeSpec([(0,), (1,), (0, 0), (0, 1), (1, 0), (0, 0, 0), (0, 0, 1), (0, 0, 0, 0)])


def test_tree_buffers():
    bufs = TREE.buffers()
    n = TREE.num_nodes + 1
    assert bufs.attn_mask.shape == (n, n) and bool(bufs.attn_mask.diagonal().all())
    idx = {p: i + 1 for i, p in enumerate(TREE.paths)}
    i = idx[(0, 0, 1)]
    assert set(torch.nonzero(bufs.attn_mask[i]).flatten().tolist()) == {0, idx[(0,)], idx[(0, 0)], i}
    assert bufs.depth[i] == 3 and bufs.parent[i] == idx[(0, 0)] and bufs.choice_index[i] == 1
    leaves = {tuple(r[r >= 0].tolist()) for r in bufs.retrieve}
    assert leaves == {(0, idx[(1,)], idx[(1, 0)]), (0, idx[(0,)], idx[(0, 1)]),
                      (0, idx[(0,)], idx[(0, 0)], idx[(0, 0, 1)]),
                      (0, idx[(0,)], idx[(0, 0)], idx[(0, 0, 0)], idx[(0, 0, 0, 0)])}
    assert TreeSpec.from_json(TREE.to_json()).paths == TREE.paths
    with pytest.raises(ValueError, match="no parent"):
        TreeSpec([(0, 0)])
    assert TreeSpec.chain(3).paths == [(0,), (0, 0), (0, 0, 0)]


def test_topk_candidates_medusa_rule():
    logits = torch.randn(2, 4, 30)
    cand = topk_candidates(logits, torch.tensor([5, 6]), TREE)
    top = logits.topk(2, -1).indices
    for n, p in enumerate(TREE.paths, 1):
        assert torch.equal(cand[:, n], top[:, len(p) - 1, p[-1]])
    assert cand[:, 0].tolist() == [5, 6]


def _check_identity(adapter, n, max_new=24, seed=0):
    prompts = prompts_for(adapter, n)
    ref = generate_greedy(adapter, prompts, max_new_tokens=max_new)
    drafter = OracleDrafter(ref.tokens, len(adapter.tokenizer), seed=seed)
    res = generate_tree(adapter, drafter, TREE, prompts, max_new_tokens=max_new)
    assert res.tokens == ref.tokens
    # every forward emitted exactly the planned accepted length + the bonus token
    for b in range(n):
        lens = res.extra["accept_lengths"][b]
        planned = [p[b] + 1 for p in drafter.planned[:len(lens) - 1]]
        assert lens[1:-1] == planned[:-1]  # the last forward may be cut by eos / max_new_tokens
        assert res.nfe[b] == len(lens)
        assert sum(lens) >= len(res.tokens[b])
    assert res.extra["accepted_per_forward"] > 1.5
    return res


@pytest.mark.parametrize("n", [1, 4])
def test_greedy_identity_tiny(n):
    _check_identity(tiny_adapter(), n)


def test_random_drafter_still_identical():
    """Mostly-rejected candidates: outputs still equal greedy, >= 1 token per forward."""
    a = tiny_adapter(seed=3)
    prompts = prompts_for(a, 4)
    ref = generate_greedy(a, prompts, max_new_tokens=20)

    class Rand:
        num_heads = 4

        def draft(self, h, root, tree):
            g = torch.Generator().manual_seed(int(root.sum()))
            c = torch.randint(0, 77, (root.shape[0], tree.num_nodes + 1), generator=g)
            c[:, 0] = root
            return c

    res = generate_tree(a, Rand(), TREE, prompts, max_new_tokens=20)
    assert res.tokens == ref.tokens
    assert all(x >= 1 for x in res.nfe)


def test_typical_acceptance_runs_and_stops():
    a = tiny_adapter(seed=1)
    prompts = prompts_for(a, 2)
    ref = generate_greedy(a, prompts, max_new_tokens=16)
    res = generate_tree(a, OracleDrafter(ref.tokens, 77, strict=False), TREE, prompts, max_new_tokens=16,
                        acceptance="typical")
    assert all(1 <= len(r) <= 16 for r in res.tokens)
    with pytest.raises(ValueError, match="acceptance"):
        generate_tree(a, OracleDrafter(ref.tokens, 77), TREE, prompts, acceptance="nope")


@pytest.mark.skipif(not (builtin_dir("ar") / "model.safetensors").exists(), reason="built-in AR teacher absent")
@pytest.mark.parametrize("n", [1, 4])
def test_greedy_identity_builtin_teacher(n):
    _check_identity(load_backbone("builtin:ar"), n, max_new=32, seed=n)
