"""Learn2PD mechanics on a tiny random dLLM: oracle labels, resumable oracle data, filter
training, the decode policy (incl. EoTP), and train -> export -> bench-methods round trip."""
import json

import pytest
import torch

from accel.decoding.dllm import generate_vanilla
from accel.decoding.policies import BlockState
from accel.models.backbone import Adapter
from accel.models.tiny import make_model
from accel.recipes.learn2pd import model as M
from accel.recipes.learn2pd import oracle
from accel.recipes.learn2pd.decode import Learn2PDPolicy, generate_learn2pd
from accel.recipes.learn2pd.kernels import decision_ref
from accel.trainers.config import ConfigError
from conftest import TINY  # noqa: E402 (the shared tiny model size)

PROMPTS = ["copy 123", "reverse 4567", "sort 91", "remove 1 from 5678", "insert 3 at 0 in 12"]


class NoMaskAdapter(Adapter):
    """A random model may argmax the mask token itself; real teachers never do. Forbid it."""

    def dllm_logits(self, *a, **k):
        logits, out = super().dllm_logits(*a, **k)
        logits[..., self.mask_id] = -float("inf")
        return logits, out


@pytest.fixture(scope="module")
def adapter(tok):
    torch.set_num_threads(1)
    m = make_model("dllm", tok, **TINY).eval()
    return NoMaskAdapter(m, tok, "builtin", "dllm", "test:tiny", mask_id=tok.mask_token_id,
                         eos_ids=(tok.eos_token_id,))


def ids(tok, prompts=PROMPTS[:3]):
    return [oracle.encode_prompt(tok, p) for p in prompts]


def threshold_filter(cut: float = 0.96, L: int = 32) -> M.UnmaskFilter:
    """A hand-set filter: sigmoid(z) > 0.96 exactly when conf > cut (z = 40 (conf - cut) + logit(0.96))."""
    f = M.UnmaskFilter(L, L)
    with torch.no_grad():
        f.fc1.weight.copy_(torch.eye(L))
        f.fc1.bias.zero_()
        f.fc2.weight.copy_(40 * torch.eye(L))
        f.fc2.bias.fill_(-40 * cut + float(torch.logit(torch.tensor(0.96))))
    return f


def const_filter(bias: float, L: int = 32) -> M.UnmaskFilter:
    f = M.UnmaskFilter(L, 32)
    with torch.no_grad():
        for p in f.parameters():
            p.zero_()
        f.fc2.bias.fill_(bias)
    return f


# ------------------------------------------------------------------ oracle
def test_oracle_reproduces_reference_and_labels_are_consistent(adapter, tok):
    p = ids(tok)
    ref, vanilla = oracle.reference_canvas(adapter, p, gen_len=64, block_len=32)
    steps = []
    res = oracle.oracle_decode(adapter, p, 64, 32, reference=ref, record=lambda *a: steps.append(a))
    assert res.tokens == vanilla.tokens  # the oracle only ever writes reference tokens
    assert all(2 <= n <= 64 for n in res.nfe)  # >= one forward per block, <= vanilla's
    assert sum(len(s[0]) for s in steps) == sum(res.nfe)  # one record per row per forward
    for rows, block, step, conf, label, masked in steps:
        assert conf.shape == label.shape == masked.shape == (len(rows), 32)
        assert ((conf > 0) & (conf <= 1)).all()
        assert label[~masked].all()  # decoded positions hold the reference token
        assert masked.any(1).all()  # only rows with work left are forwarded
    first = [s for s in steps if s[1] == 0 and s[2] == 0][0]
    assert first[5].all()  # the block starts fully masked


def test_oracle_early_exit_keeps_tokens_and_skips_the_padding(adapter, tok):
    p = ids(tok)
    ref, _ = oracle.reference_canvas(adapter, p, gen_len=64, block_len=32)
    ref[:, 5] = adapter.eos_ids[0]  # every answer ends at its 6th token: block 2 is pure padding
    full = oracle.oracle_decode(adapter, p, 64, 32, reference=ref)
    early = oracle.oracle_decode(adapter, p, 64, 32, reference=ref, early_exit=True)
    assert early.tokens == full.tokens and all(len(t) <= 6 for t in early.tokens)
    assert all(e < f for e, f in zip(early.nfe, full.nfe))  # the padding block costs no forward


def test_calibration_picks_the_cheapest_tau_that_keeps_quality(adapter, tok):
    """A filter whose probability is sigmoid(0) = 0.5 everywhere: every tau > 0.5 is one token per step
    (the reference), tau 0.5 unmasks everything at once. Without a scorer, agreement decides."""
    from accel.recipes.learn2pd.calibrate import calibrate_tau
    p = ids(tok)
    tau, table = calibrate_tau(adapter, const_filter(0.0), p, 32, eotp=False, grid=(0.3, 0.7, 0.9), full_table=True)
    by = {r["tau"]: r for r in table}
    assert by[0.7]["agreement"] == by[0.9]["agreement"] == 1.0 and by[0.3]["nfe"] == 1.0
    assert tau == (0.3 if by[0.3]["agreement"] == 1.0 else 0.7)
    # by default the grid stops at the first τ that agrees everywhere: same choice, 0.9 never decoded
    early, short = calibrate_tau(adapter, const_filter(0.0), p, 32, eotp=False, grid=(0.3, 0.7, 0.9))
    assert early == tau and short == [r for r in table if r["tau"] <= tau]
    # with a scorer, the reference's own accuracy is the bar (row tau=1.0 appended)
    for full in (True, False):
        tau, table = calibrate_tau(adapter, const_filter(0.0), p, 32, eotp=False, grid=(0.3, 0.7),
                                   scorer=lambda i, text: len(text) % 2 == 0, full_table=full)
        assert table[-1]["tau"] == 1.0 and tau in (0.3, 0.7)
        bar = min(table[-1]["accuracy"], max(r["accuracy"] for r in table[:-1]))
        assert tau == [r["tau"] for r in table[:-1] if r["accuracy"] >= bar][0]
        assert len(table) == 3 if full else table[-2]["tau"] == tau  # stopped at the chosen τ


def test_calibration_stopping_early_chooses_what_the_full_grid_does():
    """The rule behind stopping the grid: once a τ matches the reference, the rows after it never change
    the choice, whatever the accuracies, agreements and tolerance (random tables, both modes)."""
    import random

    from accel.recipes.learn2pd.calibrate import choose, matches_reference
    rnd = random.Random(0)
    stopped = 0
    for _ in range(3000):
        n = rnd.randint(1, 6)
        levels = [k / 4 for k in range(5)]
        table = [{"tau": 0.5 + 0.05 * i, "accuracy": rnd.choice(levels), "agreement": rnd.choice(levels)}
                 for i in range(n)]
        ref_acc = rnd.choice(levels + [None])
        tol = rnd.choice([0.0, 0.1, 0.25, 0.5])
        k = next((i for i, r in enumerate(table) if matches_reference(r, ref_acc)), n - 1)
        stopped += k < n - 1
        assert choose(table[:k + 1], ref_acc, tol) == choose(table, ref_acc, tol), (table, ref_acc, tol)
    assert stopped > 500  # the early stop was exercised


def test_oracle_labels_match_argmax(adapter, tok):
    """At the first step the label is exactly argmax(logits) == reference, per position."""
    from accel.decoding.dllm import init_canvas
    from accel.models.masks import full_mask, position_ids
    p = ids(tok)
    ref, _ = oracle.reference_canvas(adapter, p, 32, 32)
    steps = []
    oracle.oracle_decode(adapter, p, 32, 32, reference=ref, record=lambda *a: steps.append(a))
    x, valid, P = init_canvas(adapter, p, 32)
    logits, _ = adapter.dllm_logits(x, full_mask(valid), position_ids(valid))
    x0 = logits[:, P:P + 32].argmax(-1)
    assert torch.equal(steps[0][4], x0 == ref)


def test_oracle_dataset_is_resumable_and_checks_settings(adapter, tok, tmp_path):
    prompts = [{"prompt": p, "task": "t"} for p in PROMPTS]
    part = tmp_path / "part"
    oracle.generate_oracle_dataset(adapter, prompts, part, gen_len=32, batch_size=2, progress=False, max_shards=1)
    assert not oracle.oracle_complete(part)
    with pytest.raises(ConfigError, match="incomplete"):
        oracle.load_oracle_dataset(part)
    oracle.generate_oracle_dataset(adapter, prompts, part, gen_len=32, batch_size=2, progress=False)
    full = tmp_path / "full"
    oracle.generate_oracle_dataset(adapter, prompts, full, gen_len=32, batch_size=2, progress=False)
    a, meta = oracle.load_oracle_dataset(part)
    b, _ = oracle.load_oracle_dataset(full)
    assert a.to_dict() == b.to_dict()
    assert sorted(set(a["prompt_idx"])) == list(range(len(PROMPTS)))
    assert meta["teacher"] == "test:tiny" and meta["block_len"] == 32 and meta["gen_len"] == 32
    assert meta["prompt_source"] == "suite" and meta["complete"]
    with pytest.raises(ConfigError, match="gen_len"):
        oracle.generate_oracle_dataset(adapter, prompts, part, gen_len=64, batch_size=2, progress=False)


def test_load_prompts_sources(tmp_path):
    suite = oracle.load_prompts("suite", "copy,sort", 3)
    assert len(suite) == 6 and {r["task"] for r in suite} == {"copy", "sort"}
    j = tmp_path / "p.jsonl"
    j.write_text('{"prompt": "copy 12"}\n\n{"prompt": "sort 31", "task": "sort"}\n')
    assert oracle.load_prompts(str(j), n=0) == [{"prompt": "copy 12", "task": "user"},
                                                 {"prompt": "sort 31", "task": "sort"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x"}\n')
    from accel.data.prompts import PromptSourceError
    with pytest.raises(PromptSourceError, match="bad.jsonl:1: needs a string 'prompt'"):
        oracle.load_prompts(str(bad))
    import datasets
    datasets.Dataset.from_dict({"prompt": ["copy 1", "copy 2", "copy 3"]}).save_to_disk(str(tmp_path / "hf"))
    assert [r["prompt"] for r in oracle.load_prompts(str(tmp_path / "hf"), n=2)] == ["copy 1", "copy 2"]
    with pytest.raises(PromptSourceError, match="no such file"):
        oracle.load_prompts(str(tmp_path / "missing.jsonl"))


# ------------------------------------------------------------------ filter
def test_filter_size_and_training_reduces_loss():
    assert sum(p.numel() for p in M.UnmaskFilter(32, 32).parameters()) == 2112
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(512, 32, generator=g)
    label = (conf > 0.8).float()
    masked = torch.rand(512, 32, generator=g) < 0.7
    data = {"conf": conf, "label": label, "masked": masked}
    torch.manual_seed(0)
    f = M.UnmaskFilter()
    losses = M.train_filter(f, data, steps=600, lr=1e-2)
    assert losses[-1] < 0.25 * losses[0]
    m = M.classification_metrics(f, data, 0.5)
    assert m["precision"] > 0.85 and m["recall"] > 0.85 and m["fpr"] < 0.05


def test_split_by_prompt_holds_out_whole_prompts():
    t = {"conf": torch.rand(10, 32), "prompt_idx": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])}
    tr, va = M.split_by_prompt(t, 0.4, seed=0)
    assert len(set(tr["prompt_idx"].tolist()) & set(va["prompt_idx"].tolist())) == 0
    assert len(va["prompt_idx"]) == 4 and len(tr["prompt_idx"]) == 6


# ------------------------------------------------------------------ decode policy
def _decide(conf, x0, masked, eotp=True, end=(1,)):
    f = threshold_filter()
    w = [f.fc1.weight, f.fc1.bias, f.fc2.weight, f.fc2.bias]
    return decision_ref(torch.tensor([conf]), torch.tensor([x0]), torch.tensor([masked]), *w, 0.96, end, eotp)


def test_policy_unmasks_accepted_plus_top1_and_never_decoded():
    conf = [0.5] * 32
    conf[3], conf[4], conf[10], conf[11] = 0.99, 0.98, 0.7, 0.999
    masked = [True] * 32
    masked[11] = False
    tr, end = _decide(conf, [5] * 32, masked)
    assert torch.nonzero(tr[0]).flatten().tolist() == [3, 4] and end.tolist() == [-1]
    conf2 = [0.5] * 32
    conf2[10] = 0.7
    tr, _ = _decide(conf2, [5] * 32, [True] * 32)
    assert torch.nonzero(tr[0]).flatten().tolist() == [10]  # nothing accepted: the baseline's top-1
    tr, _ = _decide(conf2, [5] * 32, [False] * 32)
    assert not tr.any()


def test_eotp_truncation_rules():
    x0 = [5] * 32
    x0[6] = x0[9] = x0[20] = 1  # end token (id 1) predicted at 6, 9, 20
    conf = [0.5] * 32
    conf[6], conf[9], conf[20] = 0.3, 0.99, 0.97  # filter accepts 9 and 20
    tr, end = _decide(conf, x0, [True] * 32)
    assert end.tolist() == [9] and tr[0, 9]  # the first accepted end token
    conf[9], conf[20] = 0.6, 0.8  # none accepted: the most confident end prediction
    tr, end = _decide(conf, x0, [True] * 32)
    assert end.tolist() == [20] and tr[0, 20]
    masked = [True] * 32
    masked[20] = False  # an end at a decoded position does not count
    _, end = _decide(conf, x0, masked)
    assert end.tolist() == [9]
    _, end = _decide(conf, [5] * 32, [True] * 32)
    assert end.tolist() == [-1]
    _, end = _decide(conf, x0, [True] * 32, eotp=False)
    assert end.tolist() == [-1]


def test_policy_reports_absolute_end_and_checks_block_len():
    L = 32
    logits = torch.full((2, L, 8), -5.0)
    logits[:, :, 5] = 5.0
    logits[0, 7, 1] = 20.0  # row 0: confident end token at block position 7
    p = torch.softmax(logits, -1)
    conf, x0 = p.max(-1)
    masked = torch.ones(2, L, dtype=torch.bool)
    st = BlockState(logits=logits, x0=x0, confidence=conf, entropy=torch.zeros(2, L), masked=masked,
                    rows=torch.arange(2), x=torch.zeros(2, 100, dtype=torch.long), prompt_len=10, block_start=42,
                    block_index=1, step_in_block=0)
    dec = Learn2PDPolicy(threshold_filter(), tau=0.96, eotp=True, end_ids=(1,))(st)
    assert dec.end_at.tolist() == [42 + 7, -1]
    assert Learn2PDPolicy(threshold_filter(), eotp=False, end_ids=(1,))(st).end_at is None
    with pytest.raises(ValueError, match="block length 16"):
        Learn2PDPolicy(threshold_filter(L=16), end_ids=(1,))(st)


def test_generate_bounds_never_and_always_accept(adapter, tok):
    p = ids(tok)
    vanilla = generate_vanilla(adapter, p, gen_len=64, block_len=32)
    never = generate_learn2pd(adapter, p, 64, const_filter(-100.0), eotp=False)
    assert never.tokens == vanilla.tokens and never.nfe == [64] * 3  # the filter adds nothing: vanilla
    always = generate_learn2pd(adapter, p, 64, const_filter(100.0), eotp=False)
    assert always.nfe == [2] * 3  # one forward per block
    for cache in (None, "prefix", "dual"):
        r = generate_learn2pd(adapter, p, 64, threshold_filter(0.5), eotp=True, cache=cache)
        assert len(r.tokens) == 3 and all(1 <= n <= 64 for n in r.nfe)


def test_generate_eotp_truncates(adapter, tok):
    """A model whose every prediction is the end token: EoTP ends each row in one forward."""
    class EndAdapter(NoMaskAdapter):
        def dllm_logits(self, *a, **k):
            logits, out = super().dllm_logits(*a, **k)
            logits[..., self.eos_ids[0]] += 50.0
            return logits, out

    ea = EndAdapter(adapter.model, tok, "builtin", "dllm", "t", mask_id=tok.mask_token_id, eos_ids=(tok.eos_token_id,))
    r = generate_learn2pd(ea, ids(tok), 128, const_filter(-100.0), eotp=True)
    assert r.nfe == [1, 1, 1] and r.tokens == [[tok.eos_token_id]] * 3
    r = generate_learn2pd(ea, ids(tok), 128, const_filter(-100.0), eotp=False)
    assert r.nfe == [128] * 3  # without EoTP (and early exit) every position costs a forward


# ------------------------------------------------------------------ train -> export -> bench
def test_train_export_bench_round_trip(adapter, tok, tmp_path):
    from accel.decoding.checkpoint import CheckpointError, load_checkpoint
    from accel.recipes.learn2pd.config import Config
    from accel.recipes.learn2pd.export import export
    from accel.recipes.learn2pd.inference import DEFAULT_METHODS, bench_methods, load_filter
    from accel.recipes.learn2pd.train import run

    bb = tmp_path / "bb"
    adapter.model.save_pretrained(str(bb))
    tok.save_pretrained(str(bb))
    cfg = Config(output_dir=str(tmp_path / "run"), backbone=str(bb), tasks="copy,sort", n_per_task=3, gen_len=32,
                 oracle_batch_size=4, max_steps=30, save_steps=20, logging_steps=10, val_fraction=0.34,
                 shift_copies=4)  # the long world's training mix (model.shifted_copies)
    run_dir = run(cfg)
    metrics = json.loads((run_dir / "filter_metrics.json").read_text())
    for k in ("val_precision", "val_recall", "val_fpr", "train_fpr"):
        assert 0.0 <= metrics[k] <= 1.0
    from accel.recipes.learn2pd.calibrate import TAU_GRID
    table = metrics["tau_calibration"]  # τ chosen on held-out prompts, the table it chose from
    taus = [r["tau"] for r in table]
    assert taus == sorted(TAU_GRID)[:len(taus) - 1] + [1.0] and metrics["tau"] in TAU_GRID
    bar = min(table[-1]["accuracy"], max(r["accuracy"] for r in table[:-1]))  # reference row last
    assert metrics["tau"] == [r["tau"] for r in table[:-1] if r["accuracy"] >= bar][0]
    if len(taus) <= len(TAU_GRID):  # the grid stopped early: only at a τ as accurate as the reference
        assert table[-2]["accuracy"] >= table[-1]["accuracy"]
        assert all(r["accuracy"] < table[-1]["accuracy"] for r in table[:-2])
    assert json.loads((run_dir / "learn2pd.json").read_text())["tau"] == metrics["tau"]
    assert (run_dir / "oracle" / "oracle_meta.json").exists()
    ckpt = load_checkpoint(export(run_dir, tmp_path / "ckpt", tau=0.9))
    assert ckpt.recipe == "learn2pd" and ckpt.decode["tau"] == 0.9 and ckpt.decode["eotp"] is True
    assert ckpt.backbone_target() == str(bb.resolve())
    filt, s = load_filter(ckpt)
    from safetensors.torch import load_file
    saved = load_file(str(run_dir / "filter.safetensors"))
    assert all(torch.equal(filt.state_dict()[k], v) for k, v in saved.items())
    fns = bench_methods(ckpt, adapter)
    assert set(DEFAULT_METHODS) <= set(fns)
    for name in DEFAULT_METHODS:
        r = fns[name](adapter, ids(tok, PROMPTS[:2]), 32)
        assert len(r.tokens) == 2 and len(r.nfe) == 2
    with pytest.raises(CheckpointError, match="no option"):
        export(run_dir, tmp_path / "ckpt2", bogus=1)
    with pytest.raises(CheckpointError, match="no trained filter"):
        export(tmp_path, tmp_path / "ckpt3")


def test_cli_data_learn2pd_oracle(adapter, tok, tmp_path):
    from typer.testing import CliRunner

    from accel.cli.main import app
    runner = CliRunner()
    r = runner.invoke(app, ["data", "learn2pd-oracle", "--gen-len", "50"])
    assert r.exit_code == 2 and "--gen-len 50 must be a positive multiple of --block-len 32" in r.output
    bb = tmp_path / "bb"
    adapter.model.save_pretrained(str(bb))
    tok.save_pretrained(str(bb))
    j = tmp_path / "p.jsonl"
    j.write_text('{"prompt": "copy 12"}\n{"prompt": "sort 31"}\n')
    out = tmp_path / "oracle"
    r = runner.invoke(app, ["data", "learn2pd-oracle", "--out", str(out), "--backbone", str(bb), "--prompts", str(j),
                            "--gen-len", "32", "--batch-size", "1"])
    assert r.exit_code == 0, r.output
    ds, meta = oracle.load_oracle_dataset(out)
    assert meta["n_prompts"] == 2 and meta["prompt_source"] == str(j) and len(ds) >= 2
    r = runner.invoke(app, ["data", "learn2pd-oracle", "--out", str(out), "--backbone", str(bb), "--prompts", str(j),
                            "--gen-len", "64"])
    assert r.exit_code == 2 and "different settings" in r.output
