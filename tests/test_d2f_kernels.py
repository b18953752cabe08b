"""D2F's fused per-step block update: Triton (under TRITON_INTERPRET=1) vs the torch reference."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from accel.recipes.d2f.kernels import block_update, block_update_ref  # noqa: E402


def _case(R, NB, BLK, seed):
    g = torch.Generator().manual_seed(seed)
    conf = torch.rand(R, NB, BLK, generator=g)
    conf[conf > 0.75] = 0.97  # some confident positions
    masked = torch.rand(R, NB, BLK, generator=g) < 0.6
    masked[:, -1] = True  # the newest block is all masks
    is_end = torch.rand(R, NB, BLK, generator=g) < 0.04
    n_blocks = torch.randint(1, NB + 1, (R,), generator=g)
    return conf, masked, is_end, n_blocks


@pytest.mark.parametrize("R,NB,BLK,taus", [(4, 4, 16, (0.9, 0.95, 0.1)), (3, 3, 5, (0.9, 0.5, 0.3)),
                                           (2, 1, 8, (0.5, 0.95, 0.0)), (5, 6, 32, (0.8, 0.6, 0.7))])
def test_triton_matches_reference(R, NB, BLK, taus):
    for seed in range(3):
        args = _case(R, NB, BLK, seed * 7 + NB)
        ref = block_update_ref(*args, *taus)
        out = block_update(*args, *taus, force=True)
        for name, a, b in zip(("transfer", "frac", "state", "add"), out, ref):
            assert a.dtype == b.dtype, name
            assert torch.equal(a, b), name


def test_rule_semantics():
    """Hand-built row: full/semi activation, top-1 only in full blocks, fractions, the add decision."""
    BLK = 4
    conf = torch.tensor([[[0.95, 0.2, 0.3, 0.1],    # block 0: full (tail start); 0.95 passes; top-1 is it
                          [0.1, 0.4, 0.2, 0.3],     # block 1: pred frac (1/4 decoded) < tau_act: semi, nothing
                          [0.99, 0.5, 0.5, 0.5]]])  # block 2: not added (n_blocks=2): ignored
    masked = torch.tensor([[[True, True, True, False], [True] * 4, [True] * 4]])
    is_end = torch.zeros_like(masked)
    for fn in (block_update_ref, lambda *a: block_update(*a, force=True)):
        tr, frac, state, add = fn(conf, masked, is_end, torch.tensor([2]), 0.9, 0.95, 0.5)
        assert tr[0, 0].tolist() == [True, False, False, False]
        assert not tr[0, 1].any() and not tr[0, 2].any()
        assert state[0].tolist() == [2, 1, 0]
        assert frac[0, :2].tolist() == [0.5, 0.0]
        assert not add[0]  # last added block (1) has fraction 0 < tau_add


def test_full_block_takes_top1_and_end_stops_adding():
    conf = torch.tensor([[[0.3, 0.6, 0.6, 0.1], [0.2, 0.1, 0.7, 0.1]]])
    masked = torch.tensor([[[False, True, True, True], [True, True, True, True]]])
    # block 0 is 3/4 masked: block 1's predecessor fraction 0.25 >= tau_act=0.2 -> fully activated
    is_end = torch.zeros_like(masked)
    is_end[0, 1, 2] = True  # block 1's top-1 is an end token
    for fn in (block_update_ref, lambda *a: block_update(*a, force=True)):
        tr, frac, state, add = fn(conf, masked, is_end, torch.tensor([2]), 0.9, 0.2, 0.0)
        assert tr[0, 0].tolist() == [False, True, False, False]  # tie 0.6/0.6: lowest index
        assert tr[0, 1].tolist() == [False, False, True, False]
        assert state[0].tolist() == [2, 2]
        assert not add[0]  # an end token was decoded: no new block even with tau_add=0
        is_end2 = torch.zeros_like(masked)
        _, _, _, add2 = fn(conf, masked, is_end2, torch.tensor([2]), 0.9, 0.2, 0.0)
        assert add2[0]
