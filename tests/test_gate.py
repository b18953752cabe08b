"""Confidence-gated chains (`accel.decoding.gate`): the acceptance table, the gate's decisions on a scripted
drafter, and decoding identical to greedy with the real Hydra drafter on a tiny model."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from accel.decoding.gate import AcceptanceTable, GatedChain

CPU = [1.0, 1.10, 1.18, 2.2, 2.3]
"""A CPU-like cost curve: two new tokens cost 1.10 one-token forwards, three 1.18, four 2.2."""


class Scripted:
    """A drafter whose chain levels have fixed probabilities; it counts the levels it was asked to compute."""

    def __init__(self, probs, tokens=None):
        self.probs, self.tokens, self.computed = list(probs), tokens or list(range(10, 10 + len(probs))), 0

    def chain_levels(self, hidden_last, root_token, max_depth):
        for tok, p in zip(self.tokens[:max_depth], self.probs[:max_depth]):
            self.computed += 1
            yield torch.tensor([tok]), torch.tensor([p])


def _step(gate, root=1):
    cand, tree = gate.draft(None, torch.tensor([root]), None)
    assert cand.shape[1] == tree.num_nodes + 1 and tree.num_nodes == tree.max_depth
    return cand[0, 1:].tolist()


def _verify(gate, root, accepted):
    """What generate_tree tells the drafter after a step: the root and the drafts the target accepted."""
    toks = torch.tensor([[root, *accepted]])
    gate.observe(None, torch.ones_like(toks, dtype=torch.bool), None, toks)


def test_table_starts_at_the_drafts_word_and_learns():
    t = AcceptanceTable(2)
    assert t.rate(0, 0.05) == pytest.approx(0.05) and t.rate(0, 0.93) == pytest.approx(0.95)
    for _ in range(40):
        t.record(0, 0.93, False)  # an over-confident draft: its 0.9+ bin falls
    assert t.rate(0, 0.93) < 0.1 and t.rate(1, 0.93) == pytest.approx(0.95)
    # with nothing seen at depth 1 the gain is averaged over depth 0's probabilities (all 0.9+, all rejected)
    assert t.expected_gain(1, 1.0, 0.1) == pytest.approx(0.85)
    assert t.expected_gain(0, 1.0, 0.1) == pytest.approx(max(0.0, t.rate(0, 0.93) - 0.1))


def test_unconfident_levels_are_neither_verified_nor_drafted():
    """At 5% a first draft is not worth the 10% a second verified token costs: the step verifies its root alone,
    and the second level is never computed."""
    inner = Scripted([0.05, 0.99])
    gate = GatedChain(inner, CPU, level_cost=0.05, max_depth=3)
    assert _step(gate) == [] and inner.computed == 1


def test_confident_levels_are_verified_as_deep_as_the_curve_pays():
    """At 95% the first two drafts pay for 1.10 and 1.18; the third (reached 86% of the time) would take the
    forward to 2.2: not kept. On a flat (GPU) curve all three are."""
    inner = Scripted([0.95, 0.95, 0.95])
    assert _step(GatedChain(inner, CPU, level_cost=0.05, max_depth=3)) == [10, 11]
    assert _step(GatedChain(Scripted([0.95] * 3), [1.0] * 5, level_cost=0.05, max_depth=3)) == [10, 11, 12]
    with pytest.raises(TypeError, match="chain_levels"):
        GatedChain(object(), CPU, 0.05, 2)


def test_gate_learns_from_the_verifier_and_the_bonus_token():
    """A draft that says 0.95 and is never right stops being verified. A level drafted but not verified is
    scored against the step's bonus token (the next step's root)."""
    inner = Scripted([0.95, 0.95], tokens=[7, 8])
    gate = GatedChain(inner, CPU, level_cost=0.05, max_depth=2)
    steps = []
    for _ in range(80):
        steps.append(_step(gate))
        _verify(gate, 1, [])  # the target accepted nothing; its own token, the next root, is 1 again
    assert steps[0] == [7, 8] and steps[-1] == []
    assert gate.table.rate(0, 0.95) < 0.05 and gate.lam < 1
    # the bonus check: a first level drafted, not verified (depth 2 never), and the target's next token equal to it
    inner = Scripted([0.5, 0.01], tokens=[7, 8])
    gate = GatedChain(inner, CPU, level_cost=0.05, max_depth=2)
    gate.table.hits[0] = [0.0] * 10  # the table says a 0.5 draft never lands: not verified
    assert _step(gate) == []
    before = gate.table.tries[0][5]
    _verify(gate, 1, [])
    gate.draft(None, torch.tensor([7]), None)  # the bonus (this root) was the draft's token
    assert gate.table.tries[0][5] == before + 1 and gate.table.hits[0][5] == 1.0


def test_gated_hydra_chain_identical_to_greedy(tiny_adapter):
    """The real Hydra drafter behind the gate: single rows (gated) and a ragged batch (the call's fixed chain)
    decode greedy's tokens, and the gated steps' chain tokens are the ones `draft` proposes for a chain."""
    from accel.decoding.ar import generate_greedy
    from accel.decoding.tree import TreeSpec, generate_tree
    from accel.recipes.hydra.drafter import HydraDrafter
    from accel.recipes.hydra.heads import HydraHeads
    adapter = tiny_adapter("ar")
    m = adapter.model
    torch.manual_seed(0)
    heads = HydraHeads(m.config.hidden_size, m.config.vocab_size, 3, 1, 0.0)
    heads.init_from_lm_head(m.get_output_embeddings())
    heads.eval()
    tok = adapter.tokenizer
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in ("copy 1 2 3", "sort 9 3 5 1 7", "copy 4")]
    ref = generate_greedy(adapter, prompts, max_new_tokens=16)
    d = HydraDrafter(heads, m.get_input_embeddings())
    h, root = torch.randn(1, m.config.hidden_size), torch.tensor([5])
    levels = [int(t[0]) for t, _ in d.chain_levels(h, root, 3)]
    assert levels == d.draft(h, root, TreeSpec.chain(3))[0, 1:].tolist()
    gate = GatedChain(HydraDrafter(heads, m.get_input_embeddings()), [1.0, 1.02, 1.04, 1.06], 0.01, 3)
    for p, r in zip(prompts, ref.tokens):
        assert generate_tree(adapter, gate, TreeSpec.chain(2), [p], max_new_tokens=16).tokens == [r]
    assert sum(gate.depths[1:]) > 0 and gate.modeled_speedup() is not None
    assert generate_tree(adapter, gate, TreeSpec.chain(2), prompts, max_new_tokens=16).tokens == ref.tokens
