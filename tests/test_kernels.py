"""The fused argmax/prob/entropy kernel vs its torch reference, under TRITON_INTERPRET=1 on CPU."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton")

from accel.decoding.kernels import (argmax_prob_entropy, argmax_prob_entropy_ref,  # noqa: E402
                                    argmax_prob_entropy_triton)

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="kernel tests run Triton's interpreter on CPU tensors")


def _check(logits, block_v=None):
    ids_t, p_t, h_t = argmax_prob_entropy_triton(logits, block_v=block_v)
    ids_r, p_r, h_r = argmax_prob_entropy_ref(logits)
    assert ids_t.shape == p_t.shape == h_t.shape == logits.shape[:-1]
    assert ids_t.dtype == torch.long and p_t.dtype == h_t.dtype == torch.float32
    assert torch.equal(ids_t, ids_r)
    torch.testing.assert_close(p_t, p_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_t, h_r, rtol=1e-5, atol=1e-5)  # equal_nan off: inf must match inf
    return ids_t, p_t, h_t


@pytest.mark.parametrize("V", [77, 1000, 4099])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_matches_reference_awkward_shapes(V, dtype):
    g = torch.Generator().manual_seed(V)
    x = (torch.randn(2, 3, V, generator=g) * 4).to(dtype)
    x[0, 1, : V // 3] = float("-inf")  # -inf entries
    _check(x)
    _check(x, block_v=256)  # several chunks: exercises the online rescaling


def test_reference_is_softmax_entropy():
    x = torch.randn(4, 50, dtype=torch.float64)
    x[1, 3:9] = float("-inf")
    ids, p, h = argmax_prob_entropy_ref(x)
    sm = torch.softmax(x, -1)
    assert torch.equal(ids, x.argmax(-1))
    torch.testing.assert_close(p, sm.max(-1).values.float())
    want = -(sm * torch.log(sm.clamp_min(1e-300))).sum(-1)
    torch.testing.assert_close(h, want.float())


def test_ties_pick_lowest_index_across_chunks():
    x = torch.zeros(3, 200)
    x[0, [5, 40, 199]] = 3.0  # ties in different 32-wide chunks
    x[1, [33, 34]] = 2.0  # tie inside one chunk
    x[2] = 1.0  # all equal: index 0, uniform prob, entropy log V
    x16 = x.to(torch.bfloat16)
    for block_v in (32, 256):
        ids, p, h = _check(x16, block_v=block_v)
        assert ids.tolist() == [5, 33, 0] == x.argmax(-1).tolist()
    torch.testing.assert_close(h[2], torch.tensor(200.0).log())
    torch.testing.assert_close(p[2], torch.tensor(1 / 200))


def test_all_neg_inf_row_is_defined():
    x = torch.randn(3, 77)
    x[1] = float("-inf")
    x[2, 1:] = float("-inf")  # one finite entry: a point mass
    ids, p, h = _check(x, block_v=32)
    assert (ids[1].item(), p[1].item(), h[1].item()) == (0, 0.0, float("inf"))
    assert (ids[2].item(), p[2].item(), h[2].item()) == (0, 1.0, 0.0)
    assert not torch.isnan(p).any() and not torch.isnan(h).any()


def test_non_contiguous_and_empty():
    x = torch.randn(6, 300)[:, ::2]  # stride 2 on the vocab axis
    _check(x)
    ids, p, h = argmax_prob_entropy_triton(torch.randn(0, 10))
    assert ids.shape == (0,) and p.shape == (0,)


def test_dispatcher_uses_reference_on_cpu_unless_forced(monkeypatch):
    import accel.decoding.kernels as k
    calls = []
    monkeypatch.setattr(k, "argmax_prob_entropy_triton", lambda t: calls.append(1) or argmax_prob_entropy_ref(t))
    x = torch.randn(2, 9)
    argmax_prob_entropy(x)
    assert calls == []
    argmax_prob_entropy(x, force=True)
    assert calls == [1]


def test_rejects_integer_logits():
    with pytest.raises(TypeError, match="dtype"):
        argmax_prob_entropy_triton(torch.zeros(2, 5, dtype=torch.long))
