"""Stop strings end AR rows early (`accel.decoding.stop`): greedy's row up to the token that completes the
first stop string, the same for every lossless tree method, fewer forwards, the answer cut the same."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from accel.data import tasks
from accel.data.tokenizer import chat_prompt_ids
from accel.decoding.ar import generate_greedy
from accel.decoding.methods import get_method
from accel.decoding.stop import StopStrings
from accel.decoding.tree import TreeSpec, generate_tree
from accel.models.backbone import load_backbone
from accel.models.weights import builtin_dir

pytestmark = pytest.mark.skipif(not (builtin_dir("ar") / "model.safetensors").exists(),
                                reason="built-in AR teacher absent")
TASKS = ("arith", "sort", "copy")  # answers of 20, 8 and 5 tokens: prompts of different lengths (padding)
GEN = 24


@pytest.fixture(scope="module")
def setup():
    adapter = load_backbone("builtin:ar")
    tok = adapter.tokenizer
    prompts = [chat_prompt_ids(tok, tasks.test_split(t, 1)[0]["prompt"]) for t in TASKS]
    return adapter, tok, prompts, generate_greedy(adapter, prompts, max_new_tokens=GEN)


def _stop_inside(tok, row):
    """A stop string that first completes inside `row` (before its last token): (string, prefix length there)."""
    for k in range(1, len(row) - 1):
        s = tok.decode(row[k:k + 1])
        n = next(n for n in range(1, len(row) + 1) if s in tok.decode(row[:n]))
        if s.strip() and 2 <= n < len(row) - 1:
            return s, n
    raise AssertionError(f"no usable stop string in {tok.decode(row)!r}")


class _Replay:
    """Drafts greedy's own continuation (every draft accepted): steps of 1 + depth tokens, so a stop inside
    a step shows that the tokens accepted past it are dropped."""

    def __init__(self, refs):
        self.refs, self.pos = refs, [0] * len(refs)

    def draft(self, hidden_last, root_token, tree):
        out = torch.zeros(root_token.shape[0], tree.num_nodes + 1, dtype=torch.long)
        for b, r in enumerate(self.refs):
            nxt = r[self.pos[b] + 1:self.pos[b] + 1 + tree.num_nodes]
            out[b, 0] = root_token[b]
            out[b, 1:1 + len(nxt)] = torch.tensor(nxt, dtype=torch.long)
            self.pos[b] += tree.num_nodes + 1
        return out


def test_first_finds_the_token_that_completes_a_stop(setup):
    adapter, tok, _, full = setup
    row = full.tokens[0]
    s, n = _stop_inside(tok, row)
    stop = StopStrings.of(tok, [[s]])
    assert stop.first(0, row, max(0, n - 3)) == n  # a step that accepted tokens past the stop: cut where it completed
    assert stop.first(0, row[:n - 1], 0) is None
    assert StopStrings.of(tok, [[], [""]]) is None  # nothing to check: no object, the loops skip the checks


def test_greedy_and_lossless_trees_end_at_the_stop(setup):
    """Each row alone (the unpadded loop) and the batch (padded): greedy's row up to the stop, with fewer
    forwards; a chain whose drafts are all accepted ends at the same token, its last step cut short."""
    adapter, tok, prompts, full = setup
    stops, cuts = zip(*[_stop_inside(tok, row) for row in full.tokens])
    chain = TreeSpec.chain(3)
    for b, p in enumerate(prompts):
        one = StopStrings.of(tok, [[stops[b]]])
        g = generate_greedy(adapter, [p], max_new_tokens=GEN, stop=one)
        assert g.tokens[0] == full.tokens[b][:cuts[b]] and g.nfe[0] < full.nfe[b]
        t = generate_tree(adapter, _Replay([full.tokens[b]]), chain, [p], max_new_tokens=GEN, stop=one)
        assert t.tokens == g.tokens
        assert sum(t.extra["accept_lengths"][0]) == cuts[b]
    both = StopStrings.of(tok, [[s] for s in stops])
    g = generate_greedy(adapter, prompts, max_new_tokens=GEN, stop=both)
    assert g.tokens == [r[:n] for r, n in zip(full.tokens, cuts)]
    t = generate_tree(adapter, _Replay(full.tokens), chain, prompts, max_new_tokens=GEN, stop=both)
    assert t.tokens == g.tokens
    assert any(n % 4 != 1 for n in cuts)  # some stop fell inside a 4-token step (1 + 4k are step ends)


def test_methods_take_stop_where_their_loop_checks_it(setup):
    adapter, tok, prompts, full = setup
    s, n = _stop_inside(tok, full.tokens[0])
    greedy = get_method("greedy", "ar")
    assert greedy.stops and not get_method("vanilla", "dllm").stops
    assert greedy(adapter, prompts[:1], GEN, stop=StopStrings.of(tok, [[s]])).tokens[0] == full.tokens[0][:n]
    assert greedy(adapter, prompts[:1], GEN).tokens[0] == full.tokens[0]
