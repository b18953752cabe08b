"""Context lookup (`accel.decoding.lookup`): the index, and decoding identical to greedy with fewer forwards."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from accel.decoding.lookup import ACCEPTANCE, ContextIndex, LookupDrafter, bucket, plan_lengths


def test_index_matches_the_most_recent_longest_suffix():
    ix = ContextIndex(max_ngram=3)
    ix.extend([5, 6, 7, 1, 5, 6, 8, 2, 5, 6])
    # "5 6" occurred twice before: the most recent was followed by 8 2
    assert ix.match(2) == (2, [8, 2])
    ix.extend([7])
    # "5 6 7" (3 tokens) beats "6 7"'s and "7"'s matches; it was followed by 1 5
    assert ix.match(2) == (3, [1, 5]) and ix.match(3) == (3, [1, 5, 6])
    ix.extend([9])
    assert ix.match(2) == (0, [])  # "7 9" never occurred; a single token does not draft (min_ngram 2)
    assert ix.match(2, min_ngram=1) == (0, [])  # neither did "9"
    ix = ContextIndex()
    ix.extend([4, 4, 4])
    assert ix.match(3) == (2, [4])  # the continuation is cut at the end of the context


def test_chain_lengths_follow_the_cost_curve():
    """This machine's 2-thread curve (3 new tokens 1.11 forwards, 5 1.54) drafts 2 tokens after a 2-token match
    and 8 after a loop-length one; a flat (GPU) curve drafts the longest chain for every match; no curve, 2."""
    cpu = [1.0, 1.038, 1.108, 1.473, 1.544, 1.545, 1.766, 1.766, 1.799, 1.875]
    lengths = plan_lengths(cpu)
    assert lengths[2] == 2 and lengths[16] == 8
    assert list(lengths.values()) == sorted(lengths.values())  # longer matches never draft less
    assert set(plan_lengths([1.0] * 10).values()) == {8}
    assert set(plan_lengths(None).values()) == {2}
    assert bucket(2) == 2 and bucket(5) == 4 and bucket(40) == 16 and set(ACCEPTANCE) == set(lengths)


def test_drafter_rejects_bad_settings():
    with pytest.raises(ValueError, match="min_ngram"):
        LookupDrafter(min_ngram=3, max_ngram=2)
    with pytest.raises(ValueError, match="lengths"):
        LookupDrafter(lengths={2: 0})


def _prompts(tok):
    return [tok(p, add_special_tokens=False)["input_ids"] for p in
            ("copy 1 2 3 1 2 3 1 2 3", "sort 9 3 5 1 7 9 3 5", "copy 4 4 4 4")]


def test_lookup_alone_identical_to_greedy_with_fewer_forwards(tiny_adapter):
    """Prompt lookup with no trained drafter: each row alone (batch 1, lookups happen) and the batch together
    (no lookups at batch > 1: one-token steps) give greedy's tokens; at batch 1 the lookups save forwards."""
    from accel.decoding.ar import generate_greedy
    from accel.decoding.tree import TreeSpec, generate_tree
    adapter = tiny_adapter("ar")
    prompts = _prompts(adapter.tokenizer)
    g = generate_greedy(adapter, prompts, max_new_tokens=24)
    drafter = LookupDrafter()
    nfe = 0
    for p, ref in zip(prompts, g.tokens):
        res = generate_tree(adapter, drafter, TreeSpec.chain(0), [p], max_new_tokens=24)
        assert res.tokens == [ref]
        nfe += res.nfe[0]
    assert drafter.lookups > 0
    assert nfe < sum(g.nfe)
    res = generate_tree(adapter, LookupDrafter(), TreeSpec.chain(0), prompts, max_new_tokens=24)
    assert res.tokens == g.tokens and res.nfe == g.nfe


class _WrongDrafter:
    """Drafts tokens the base never produces (every one rejected): lookup must carry the savings alone."""
    num_heads = 2

    def draft(self, hidden_last, root_token, tree):
        return torch.cat([root_token[:, None], torch.zeros(root_token.shape[0], tree.num_nodes, dtype=torch.long)], 1)


def test_lookup_in_front_of_a_drafter(tiny_adapter):
    from accel.decoding.ar import generate_greedy
    from accel.decoding.tree import TreeSpec, generate_tree
    adapter = tiny_adapter("ar")
    prompts = _prompts(adapter.tokenizer)
    g = generate_greedy(adapter, prompts, max_new_tokens=24)
    # lookup chains of 4 tokens in front of a 2-node tree: steps of either shape follow each other
    drafter = LookupDrafter(_WrongDrafter(), lengths={b: 4 for b in ACCEPTANCE})
    for p, ref in zip(prompts, g.tokens):
        assert generate_tree(adapter, drafter, TreeSpec.chain(2), [p], max_new_tokens=24).tokens == [ref]
    assert 0 < drafter.lookups < drafter.steps
    assert generate_tree(adapter, drafter, TreeSpec.chain(2), prompts, max_new_tokens=24).tokens == g.tokens


class _Alternating:
    """Every other step a 3-node chain of its own (a `(cand, tree)` pair, as lookup drafts), else the call's
    tree as a plain tensor (as a trained drafter behind lookup does): all drafts wrong."""

    def __init__(self):
        self.steps = 0

    def draft(self, hidden_last, root_token, tree):
        from accel.decoding.tree import TreeSpec
        self.steps += 1
        B = root_token.shape[0]
        if self.steps % 2:
            own = TreeSpec.chain(3)
            return torch.cat([root_token[:, None], torch.zeros(B, 3, dtype=torch.long)], 1), own
        return torch.cat([root_token[:, None], torch.zeros(B, tree.num_nodes, dtype=torch.long)], 1)


def test_a_plain_step_after_a_step_of_its_own_shape_uses_the_calls_tree(tiny_adapter):
    """The bench crashed (rotary sizes 3 vs 9) when a lookup step's chain was followed by the trained draft's
    step: the decoder kept the lookup chain's buffers. Each step's shape is the one it drafted for."""
    from accel.decoding.ar import generate_greedy
    from accel.decoding.tree import TreeSpec, generate_tree
    adapter = tiny_adapter("ar")
    prompts = _prompts(adapter.tokenizer)
    g = generate_greedy(adapter, prompts[:1], max_new_tokens=12)
    drafter = _Alternating()
    assert generate_tree(adapter, drafter, TreeSpec.chain(1), prompts[:1], max_new_tokens=12).tokens == g.tokens
    assert drafter.steps >= 4
