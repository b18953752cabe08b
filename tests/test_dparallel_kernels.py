"""dParallel's fused entropy-threshold decision: Triton (under TRITON_INTERPRET=1) vs the reference."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from accel.recipes.dparallel.kernels import entropy_transfer, entropy_transfer_ref  # noqa: E402


def _case(R, N, V, seed, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(R, N, V, generator=g) * scale).to(dtype)
    masked = torch.rand(R, N, generator=g) < 0.6
    return logits, masked


@pytest.mark.parametrize("R,N,V,dtype", [(3, 8, 37, torch.float32), (2, 5, 100, torch.float32),
                                         (2, 32, 64, torch.bfloat16), (1, 3, 300, torch.float16)])
def test_kernel_matches_reference(R, N, V, dtype):
    logits, masked = _case(R, N, V, seed=R * 100 + N, dtype=dtype)
    # a peaked row so some entropies fall under the threshold
    logits[0, 0, 5] = 40.0
    masked[0, 0] = True
    ids, ent, tr = entropy_transfer(logits, masked, 0.5, force=True)
    rids, rent, rtr = entropy_transfer_ref(logits, masked, 0.5)
    assert torch.equal(ids, rids)
    fin = torch.isfinite(rent)
    assert torch.equal(torch.isinf(ent), ~fin)
    assert torch.allclose(ent[fin], rent[fin], atol=1e-4, rtol=1e-4)
    assert torch.equal(tr, rtr)
    assert tr[0, 0]


def test_rule_semantics():
    V = 10
    logits = torch.zeros(2, 4, V)  # uniform: entropy log(10) ≈ 2.3 everywhere
    logits[0, 1, 3] = 30.0  # certain
    logits[0, 2, 4] = 2.0  # less uncertain than uniform, above threshold
    masked = torch.tensor([[True, True, True, False], [False, False, False, False]])
    for force in (False, True):
        x0, ent, tr = entropy_transfer(logits, masked, 0.5, force=force)
        assert tr.tolist() == [[False, True, False, False], [False] * 4]  # under threshold (also the lowest)
        assert x0[0, 1] == 3 and torch.isinf(ent[0, 3]) and torch.isinf(ent[1]).all()
        # nothing under the threshold: still exactly the lowest-entropy masked position
        _, _, tr = entropy_transfer(logits, masked, 1e-9, force=force)
        assert tr.tolist() == [[False, True, False, False], [False] * 4]
    logits[0, 1] = 0.0
    _, _, tr = entropy_transfer(logits, masked, 1e-9, force=True)
    assert tr.tolist()[0] == [False, False, True, False]


def test_matches_shared_entropy_policy():
    """The fused decision equals the shared sampler's entropy policy on the same logits."""
    from accel.decoding.dllm import BlockState, entropy_policy
    from accel.decoding.kernels import argmax_prob_entropy_ref
    logits, masked = _case(4, 16, 50, seed=7, scale=6.0)
    x0, conf, ent = argmax_prob_entropy_ref(logits)
    st = BlockState(logits=logits, x0=x0, confidence=conf, entropy=ent, masked=masked, rows=torch.arange(4),
                    x=None, prompt_len=0, block_start=0, block_index=0, step_in_block=0)
    want = entropy_policy(0.5)(st).transfer & masked
    _, _, got = entropy_transfer(logits, masked, 0.5, force=True)
    assert torch.equal(got, want)
