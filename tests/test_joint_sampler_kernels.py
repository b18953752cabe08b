"""The joint sampler's fused sampling step vs its torch reference (TRITON_INTERPRET=1 on CPU)."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from accel.recipes.joint_sampler.kernels import gumbel_noise, sample_step, sample_step_ref  # noqa: E402


def _case(R, N, V, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(R, N, V, generator=g) * 3).to(dtype)
    x[..., 2] = float("-inf")  # a [MASK]-like column
    x[0, 1] = float("-inf")  # a dead position
    avail = torch.rand(R, N, generator=g) > 0.3
    avail[-1] = False  # a row with nothing left
    return x, avail, gumbel_noise(x.shape, g)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
@pytest.mark.parametrize("V,block_v", [(77, None), (200, 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_reference(temperature, V, block_v, dtype):
    pytest.importorskip("triton")
    from accel.recipes.joint_sampler.kernels import sample_step_triton
    x, avail, g = _case(3, 4, V, V + int(temperature * 10), dtype)
    ref = sample_step_ref(x, avail, temperature, g)
    tri = sample_step_triton(x, avail, temperature, g, block_v=block_v)
    assert torch.equal(ref[0], tri[0]) and torch.equal(ref[1], tri[1])
    torch.testing.assert_close(ref[2], tri[2], rtol=1e-5, atol=1e-6)
    assert ref[0][-1] == -1 and ref[2][-1] == 0  # the exhausted row


def test_dispatch_force_uses_kernel_on_cpu():
    pytest.importorskip("triton")
    x, avail, g = _case(3, 5, 50, 1)
    for out, ref in zip(sample_step(x, avail, 1.0, g, force=True), sample_step_ref(x, avail, 1.0, g)):
        assert torch.equal(out, ref) if out.dtype == torch.long else torch.allclose(out, ref)


def test_reference_semantics():
    x, avail, g = _case(5, 7, 40, 3)
    pos, tok, conf = sample_step_ref(x, avail, 0.0, None)
    p = torch.softmax(x.float(), -1)
    c = torch.nan_to_num(p.amax(-1)).masked_fill(~avail, -1)
    for r in range(4):
        assert pos[r] == c[r].argmax() and avail[r, pos[r]]
        assert tok[r] == x[r, pos[r]].argmax() and tok[r] != 2
        assert conf[r] == pytest.approx(float(c[r].max()))
    # greedy ignores noise; sampling is argmax(x / T + g) at the chosen position
    assert torch.equal(sample_step_ref(x, avail, 0.0, g)[1], tok)
    pos_t, tok_t, _ = sample_step_ref(x, avail, 0.5, g)
    assert torch.equal(pos_t, pos)
    for r in range(4):
        assert tok_t[r] == (x[r, pos[r]].float() / 0.5 + g[r, pos[r]]).argmax()


def test_gumbel_max_samples_the_tempered_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.0, float("-inf")])
    n, T = 20000, 0.8
    x = logits.expand(n, 1, 4)
    _, tok, _ = sample_step_ref(x, torch.ones(n, 1, dtype=torch.bool), T, gumbel_noise(x.shape, g))
    freq = torch.bincount(tok, minlength=4).float() / n
    torch.testing.assert_close(freq, torch.softmax(logits / T, -1), atol=0.015, rtol=0)
    assert freq[3] == 0
