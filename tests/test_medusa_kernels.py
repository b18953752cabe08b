"""Fused tree candidate evaluation: Triton (TRITON_INTERPRET=1, CPU) vs the torch reference."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton")

from accel.decoding.tree import TreeSpec  # noqa: E402
from accel.decoding.tree_kernels import (evaluate_candidates, evaluate_candidates_ref,  # noqa: E402
                                         evaluate_candidates_triton, node_accept_ref)

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="kernel tests run Triton's interpreter on CPU tensors")

TREE = TreeSpec([(0,), (1,), (2,), (0, 0), (0, 1), (1, 0), (0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 0, 0, 0)])


def _case(B, V, seed, dtype=torch.float32, agree=0.6):
    """Random logits; candidates copy the parent's argmax with probability `agree`."""
    g = torch.Generator().manual_seed(seed)
    b = TREE.buffers()
    N1 = TREE.num_nodes + 1
    logits = (torch.randn(B, N1, V, generator=g) * 3).to(dtype)
    am = logits.float().argmax(-1)
    rand = torch.randint(0, V, (B, N1), generator=g)
    take = torch.rand(B, N1, generator=g) < agree
    cand = torch.where(take, am[:, b.parent], rand)
    return logits, cand, b


@pytest.mark.parametrize("V", [77, 1100])
@pytest.mark.parametrize("mode", ["greedy", "typical"])
def test_triton_matches_reference(V, mode):
    for seed in range(2):
        logits, cand, b = _case(2, V, seed + V)
        ref = evaluate_candidates_ref(logits, cand, b.retrieve, b.parent, mode, temperature=0.7)
        tri = evaluate_candidates_triton(logits, cand, b.retrieve, b.parent, mode, temperature=0.7, block_v=512)  # several chunks
        for r, t in zip(ref, tri):
            assert torch.equal(r, t), (mode, V, seed)


def test_bf16_and_dispatch():
    logits, cand, b = _case(2, 300, 7, dtype=torch.bfloat16)
    ref = evaluate_candidates(logits, cand, b.retrieve, b.parent)
    tri = evaluate_candidates(logits, cand, b.retrieve, b.parent, force=True)
    for r, t in zip(ref, tri):
        assert torch.equal(r, t)


def test_reference_semantics_by_hand():
    """Greedy: longest accepted prefix wins, ties go to the first path, root never tested."""
    V = 10
    tree = TreeSpec([(0,), (1,), (0, 0), (1, 0)])
    b = tree.buffers()  # nodes: 0 root, 1 (0,), 2 (1,), 3 (0,0), 4 (1,0)
    logits = torch.full((1, 5, V), -5.0)
    nxt = {0: 4, 1: 7, 2: 2, 3: 1, 4: 3}  # base argmax after each node
    for n, t in nxt.items():
        logits[0, n, t] = 5.0
    cand = torch.tensor([[9, 4, 4, 2, 2]])  # (0,) and (1,) both match root's 4; (0,0)=2 != 7; (1,0)=2 == 2
    best, length, am = evaluate_candidates_ref(logits, cand, b.retrieve, b.parent)
    path = b.retrieve[best[0]].tolist()
    assert int(length[0]) == 2 and path == [0, 2, 4]
    assert am[0].tolist() == [4, 7, 2, 1, 3]
    cand2 = torch.tensor([[9, 4, 4, 0, 0]])  # nothing at depth 2: the first depth-1 path wins the tie
    best, length, _ = evaluate_candidates_ref(logits, cand2, b.retrieve, b.parent)
    assert int(length[0]) == 1 and b.retrieve[best[0]].tolist()[:2] == [0, 1]


def test_typical_threshold():
    """p(x) > min(eps, alpha * exp(-H)): a flat distribution accepts tokens a peaked one rejects."""
    V = 4
    tree = TreeSpec([(0,)])
    b = tree.buffers()
    flat = torch.zeros(1, 2, V)
    acc, _ = node_accept_ref(flat, torch.tensor([[0, 2]]), b.parent, "typical", eps=0.09, alpha=0.3)
    assert bool(acc[0, 1])  # p = 0.25 > min(0.09, 0.3 * exp(-log 4))
    peaked = torch.tensor([[[10.0, 0.0, 0.0, 0.0], [0.0, 0, 0, 0]]])
    acc, _ = node_accept_ref(peaked, torch.tensor([[0, 2]]), b.parent, "typical")
    assert not bool(acc[0, 1])
