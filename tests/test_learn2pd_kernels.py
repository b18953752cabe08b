"""The fused Learn2PD step kernel against its torch reference, under the Triton interpreter."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import pytest
import torch

pytest.importorskip("triton")

from accel.recipes.learn2pd.kernels import learn2pd_step, step_ref, step_triton  # noqa: E402


def _case(B=3, L=32, V=70, H=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g) * 3
    logits[0, 5, 1] = 30.0  # a confident end token (id 1)
    logits[1, :, 2] += 3.0  # row 1: the other end id (2) is the argmax nearly everywhere
    masked = torch.rand(B, L, generator=g) < 0.6
    masked[-1] = False  # a row with nothing left to unmask
    w = [torch.randn(H, L, generator=g) * 0.5, torch.randn(H, generator=g),
         torch.randn(L, H, generator=g) * 0.5, torch.randn(L, generator=g)]
    return logits, masked, w


@pytest.mark.parametrize("L,tau,eotp,dtype", [(32, 0.96, True, torch.float32), (8, 0.3, True, torch.bfloat16),
                                               (8, 0.5, False, torch.float32)])
def test_kernel_matches_reference(L, tau, eotp, dtype):
    logits, masked, w = _case(L=L)
    logits = logits.to(dtype)
    ref = step_ref(logits, masked, *w, tau, (1, 2), eotp)
    got = step_triton(logits, masked, *w, tau, (1, 2), eotp, block_v=16)  # 16 < V: several vocab tiles
    assert torch.equal(got[0], ref[0])  # transfer
    assert torch.equal(got[1], ref[1])  # x0
    torch.testing.assert_close(got[2], ref[2], atol=1e-5, rtol=1e-5)  # confidence
    assert torch.equal(got[3], ref[3])  # end position
    assert not got[0][2].any() and got[3][2] == -1  # no masks: no transfer, no end
    if eotp:
        assert got[3][0] == 5 and got[0][0, 5]  # the confident end token ends row 0


def test_kernel_odd_shapes_and_dispatch():
    logits, masked, w = _case(B=2, L=12, V=33, H=10, seed=1)  # non-power-of-two block / hidden / vocab
    ref = step_ref(logits, masked, *w, 0.5, (1,), True)
    got = learn2pd_step(logits, masked, *w, 0.5, (1,), True, force_triton=True)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="block length"):
        step_triton(logits, masked, w[2], w[1], w[0], w[3], 0.5, (1,))


def test_policy_fused_equals_unfused():
    from accel.decoding.policies import BlockState
    from accel.recipes.learn2pd.decode import Learn2PDPolicy
    from accel.recipes.learn2pd.model import UnmaskFilter
    logits, masked, _ = _case(L=8)
    torch.manual_seed(0)
    f = UnmaskFilter(8, 16)
    p = torch.softmax(logits, -1)
    conf, x0 = p.max(-1)
    st = BlockState(logits=logits, x0=x0, confidence=conf, entropy=torch.zeros_like(conf), masked=masked,
                    rows=torch.arange(3), x=torch.zeros(3, 40, dtype=torch.long), prompt_len=10, block_start=10,
                    block_index=0, step_in_block=0)
    a = Learn2PDPolicy(f, tau=0.5, end_ids=(1, 2), fused="force")(st)
    b = Learn2PDPolicy(f, tau=0.5, end_ids=(1, 2), fused="never")(st)
    assert torch.equal(a.transfer, b.transfer) and torch.equal(a.end_at, b.end_at)
