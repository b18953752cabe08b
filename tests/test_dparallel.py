"""dParallel: certainty-forcing loss semantics, a tiny end-to-end distill, both export formats."""
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from accel.recipes.dparallel import loss as L

SMOKE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "dparallel" / "smoke.yaml"


def test_block_masks_partition_block_k():
    k, m, mbar, later = L.block_masks(64, 48, 16, 0.5, generator=torch.Generator().manual_seed(0))
    blk = torch.arange(48) // 16
    for r in range(64):
        in_k = blk == k[r]
        assert torch.equal(m[r] | mbar[r], in_k)  # complementary masks cover block k ...
        assert not (m[r] & mbar[r]).any()  # ... exactly once
        assert torch.equal(later[r], blk > k[r])
    assert set(k.tolist()) == {0, 1, 2}
    assert 0.4 < m.sum() / (m | mbar).sum() < 0.6


def test_entropy_only_where_argmax_matches_label():
    V = 6
    logits = torch.zeros(1, 3, V)
    logits[0, 0, 2] = 3.0  # argmax 2 == label: counted
    logits[0, 1, 4] = 1.0  # argmax 4 != label 0: CE only
    logits[0, 2, 1] = 5.0  # not selected at all
    labels = torch.tensor([[2, 0, 1]])
    sel = torch.tensor([[True, True, False]])
    ce, h, n_correct, n = L.term(logits, labels, sel, temperature=0.5)
    p0 = torch.softmax(logits[0, 0] / 0.5, -1)
    assert math.isclose(float(h), float(-(p0 * p0.log()).sum()), rel_tol=1e-5)
    want_ce = (torch.nn.functional.cross_entropy(logits[0, :2], labels[0, :2]))
    assert math.isclose(float(ce), float(want_ce), rel_tol=1e-6)
    assert (n_correct, n) == (1, 2)
    # the wrong position's logits get gradient from CE only, never from the entropy term
    lg = logits.clone().requires_grad_(True)
    _, h, _, _ = L.term(lg, labels, sel, 0.5)
    h.backward()
    assert lg.grad[0, 0].abs().sum() > 0 and lg.grad[0, 1].abs().sum() == 0 and lg.grad[0, 2].abs().sum() == 0


def test_loss_formula_and_lambda():
    g = torch.Generator().manual_seed(1)
    lm, lb = torch.randn(2, 8, 5, generator=g), torch.randn(2, 8, 5, generator=g)
    labels = torch.randint(5, (2, 8), generator=g)
    m = torch.rand(2, 8, generator=g) < 0.5
    loss, met = L.certainty_forcing(lm, lb, labels, m, ~m, lam=2.0)
    ce1, h1, _, _ = L.term(lm, labels, m, 0.5)
    ce2, h2, _, _ = L.term(lb, labels, ~m, 0.5)
    assert torch.allclose(loss, ce1 + ce2 + 2.0 * (h1 + h2))
    assert set(met) >= {"ce", "entropy", "correct_frac"}
    assert L.default_entropy_weight("dream") == 1.0 and L.default_entropy_weight("llada") == 2.0


class Spy(torch.nn.Module):
    """A fake dLLM: records its inputs; logits depend on each input token only."""

    def __init__(self, V):
        super().__init__()
        self.emb = torch.nn.Embedding(V, V)
        self.seen = []

    def forward(self, input_ids, attention_mask, position_ids, use_cache=False):
        self.seen.append(input_ids.clone())
        return SimpleNamespace(logits=self.emb(input_ids))


def _batch(B, P, G, V, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, P + G), generator=g)
    valid = torch.ones(B, P + G, dtype=torch.bool)
    resp = torch.zeros(B, P + G, dtype=torch.bool)
    resp[:, P:] = True
    return {"ids": ids, "valid": valid, "resp": resp}


def test_loss_inputs_and_later_blocks_carry_no_loss():
    V, B, P, G, blk, MASK = 20, 6, 3, 12, 4, 2
    adapter = SimpleNamespace(family="builtin", mask_id=MASK, shift_logits=False)
    fn = L.make_loss(adapter, blk)
    batch = _batch(B, P, G, V, 0)
    spy = Spy(V)
    torch.manual_seed(3)
    loss, _ = fn(spy, batch)
    inp = spy.seen[-1]
    assert inp.shape == (2 * B, P + G)
    assert torch.equal(inp[:B, :P], batch["ids"][:, :P]) and torch.equal(inp[B:, :P], batch["ids"][:, :P])
    bid = torch.arange(G) // blk
    for r in range(B):
        a, b = inp[r, P:] == MASK, inp[B + r, P:] == MASK
        k = int(bid[(a ^ b)].min()) if (a ^ b).any() else None
        assert k is not None
        assert torch.equal((a ^ b), bid == k)  # the two forwards split block k between them
        assert (a & b).eq(bid > k).all()  # later blocks masked in both, nothing else is
        clean = bid < k
        assert torch.equal(inp[r, P:][clean], batch["ids"][r, P:][clean])
    # changing the trajectory tokens in later blocks (the same masks drawn) changes nothing
    batch2 = {k: v.clone() for k, v in batch.items()}
    resp2 = batch2["ids"][:, P:]
    k_row = [int(bid[((inp[r, P:] == MASK) ^ (inp[B + r, P:] == MASK))].min()) for r in range(B)]
    for r in range(B):
        resp2[r, bid > k_row[r]] = (resp2[r, bid > k_row[r]] + 1) % V
    torch.manual_seed(3)
    loss2, _ = fn(spy, batch2)
    assert torch.equal(loss, loss2)
    # ... while changing a block-k label does
    batch3 = {k: v.clone() for k, v in batch.items()}
    batch3["ids"][0, P + k_row[0] * blk] = (batch3["ids"][0, P + k_row[0] * blk] + 1) % V
    torch.manual_seed(3)
    loss3, _ = fn(spy, batch3)
    assert not torch.equal(loss, loss3)


def test_canvas_beyond_trajectory_is_masked_without_loss():
    V, B, P, G, blk, MASK = 20, 4, 3, 8, 4, 2
    adapter = SimpleNamespace(family="builtin", mask_id=MASK, shift_logits=False)
    fn = L.make_loss(adapter, blk, gen_len=G, canvas_lens=[8, 16])
    batch = _batch(B, P, 16, V, 1)
    spy = Spy(V)
    widths = set()
    for seed in range(8):
        torch.manual_seed(seed)
        _, met = fn(spy, batch)
        inp = spy.seen[-1]
        widths.add(inp.shape[1] - P)
        assert met["canvas_len"] == inp.shape[1] - P
        assert (inp[:, P + G:] == MASK).all()  # the tail past the trajectory: [MASK] in both forwards
        assert met["masked"] == B * blk  # the loss covers block k (inside the trajectory) exactly once
    assert widths == {8, 16}
    _, m, mbar, later = L.block_masks(5, 8, 4, 0.5, canvas_len=16)
    assert later[:, 8:].all() and not (m | mbar)[:, 8:].any()


def test_shifted_logits_are_realigned():
    logits = torch.arange(6.).reshape(1, 3, 2)
    model = lambda **kw: SimpleNamespace(logits=logits)  # noqa: E731
    out = L.aligned_logits(model, True, None, None, None)
    assert torch.equal(out[0, 1], logits[0, 0]) and torch.equal(out[0, 2], logits[0, 1])
    assert torch.equal(L.aligned_logits(model, False, None, None, None), logits)


@pytest.fixture(scope="module")
def tiny_teacher(tiny_dir):
    """A saved random-init tiny dLLM dir (loadable by load_backbone, so adapter export can reference it)."""
    from pathlib import Path
    return Path(tiny_dir("dllm"))


def test_tiny_distill_end_to_end(tiny_teacher, tmp_path, check_adapter_export):
    from transformers import AutoModelForCausalLM

    from accel.data.tasks import test_split
    from accel.data.tokenizer import chat_prompt_ids
    from accel.decoding.checkpoint import load_checkpoint
    from accel.models.backbone import load_backbone
    from accel.recipes.dparallel.config import Config
    from accel.recipes.dparallel.export import export
    from accel.recipes.dparallel.inference import DEFAULT_METHODS, bench_methods
    from accel.recipes.dparallel.train import run
    from accel.trainers.loading import load_config

    cfg = load_config(Config, SMOKE,
                      [f"backbone={tiny_teacher}", f"output_dir={tmp_path / 'run'}", "n_per_task=1", "max_steps=3"],
                      recipe="dparallel")
    run_dir = run(cfg)
    assert (run_dir / "final" / "config.json").exists() and (run_dir / "final" / "adapter").is_dir()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"ce", "entropy", "correct_frac"} <= set(next(r for r in rows if "ce" in r))

    merged = export(run_dir, tmp_path / "ckpt")
    hf = AutoModelForCausalLM.from_pretrained(str(merged))
    ck = load_checkpoint(merged)
    assert ck.recipe == "dparallel" and ck.decode["rule"] == "entropy" and ck.decode["threshold"] == Config().threshold
    adapter = load_backbone(ck.backbone_target())
    methods = bench_methods(ck, adapter)
    assert set(DEFAULT_METHODS) <= set(methods) and DEFAULT_METHODS[0] == "vanilla"
    prompts = [chat_prompt_ids(adapter.tokenizer, e["prompt"]) for e in test_split("copy", 2)]
    res = methods["dparallel"](adapter, prompts, 32)
    assert len(res.tokens) == 2 and all(1 <= n <= 32 for n in res.nfe)
    assert methods["vanilla"](adapter, prompts, 32).nfe == [32, 32]

    check_adapter_export(export, bench_methods, run_dir, tmp_path / "ckpt-adapter", tiny_teacher, hf, prompts[0],
                         "dparallel")

    from accel.decoding.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="--format"):
        export(run_dir, tmp_path / "x", format="vllm")
    with pytest.raises(CheckpointError, match="no finished model"):
        export(tmp_path, tmp_path / "y")
