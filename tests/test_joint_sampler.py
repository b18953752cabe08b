"""Joint sampler recipe on tiny random dLLMs: decode rule, exact evaluation, data, loss, train/export/bench."""
import json
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from accel.data.tokenizer import chat_prompt_ids  # noqa: E402
from accel.decoding.dllm import init_canvas  # noqa: E402
from accel.models.masks import full_mask, position_ids  # noqa: E402
from accel.models.backbone import Adapter  # noqa: E402
from accel.models.tiny import make_model  # noqa: E402
from accel.recipes.joint_sampler import data as D  # noqa: E402
from accel.recipes.joint_sampler import evaluate as E  # noqa: E402
from accel.recipes.joint_sampler.decode import generate_joint  # noqa: E402
from accel.recipes.joint_sampler.layer import backbone_forward, build_sampler  # noqa: E402
from accel.recipes.joint_sampler.loss import collate, make_loss  # noqa: E402
from conftest import TINY  # noqa: E402 (the shared tiny model size)



@pytest.fixture(scope="module")
def adapter(tok):
    torch.set_num_threads(1)
    m = make_model("dllm", tok, seed=0, **TINY).eval()
    with torch.no_grad():  # peakier logits than a fresh init: sampling statistics become testable
        m.lm_head.weight.mul_(20.0)
    return Adapter(model=m, tokenizer=tok, family="builtin", kind="dllm", source="tiny", mask_id=tok.mask_token_id,
                   eos_ids=(tok.eos_token_id,))


def perturbed(adapter, seed=1):
    """A sampler whose output projections are no longer zero (so it is not the identity)."""
    s = build_sampler(adapter, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in (s.layer.self_attn.o_proj.weight, s.layer.mlp.down_proj.weight):
            w.copy_(torch.randn(w.shape, generator=g) * 0.5)
    return s.eval()


def prompts(tok, texts=("pick 3 from 12345", "shuffle 4821", "copy 90")):
    return [chat_prompt_ids(tok, t) for t in texts]


def test_untrained_sampler_is_the_marginal_baseline(adapter, tok):
    s = build_sampler(adapter).eval()
    ps = prompts(tok)
    x, valid, P = init_canvas(adapter, ps, 16)
    logits, h = backbone_forward(adapter, x, full_mask(valid), position_ids(valid))
    from accel.recipes.joint_sampler.layer import additive_mask, sampler_logits
    new = torch.zeros_like(x, dtype=torch.bool)
    new[:, P] = True
    with torch.no_grad():
        q = sampler_logits(adapter, s, h, x, new, additive_mask(full_mask(valid)), position_ids(valid))
    torch.testing.assert_close(q[:, P + 1:], logits[:, P + 1:], atol=1e-4, rtol=1e-4)
    a = generate_joint(adapter, ps, 16, 8, k=4, sampler=s, mode="joint")
    b = generate_joint(adapter, ps, 16, 8, k=4, mode="marginal")
    assert a.tokens == b.tokens


def test_nfe_and_passes(adapter, tok):
    s = perturbed(adapter)
    ps = prompts(tok)
    seq = generate_joint(adapter, ps, 16, 8, k=1, early_exit=False)
    assert seq.nfe == [16] * 3 and seq.extra["sampler_passes"] == [0] * 3
    for k, nfe in [(4, 4), (3, 6), (8, 2)]:  # per block of 8: ceil(8 / k) forwards
        r = generate_joint(adapter, ps, 16, 8, k=k, sampler=s, early_exit=False)
        assert r.nfe == [nfe] * 3
        assert r.extra["sampler_passes"] == [16 - nfe] * 3  # every other token came from a sampler pass
        assert all(len(t) == len([v for v in t]) for t in r.tokens)
    # sequential decoding is the same whatever sampler is passed
    assert generate_joint(adapter, ps, 16, 8, k=1, sampler=s, early_exit=False).tokens == seq.tokens


def test_batch_invariance_and_sampling_reproducible(adapter, tok):
    s = perturbed(adapter)
    ps = prompts(tok)
    batch = generate_joint(adapter, ps, 16, 8, k=4, sampler=s)
    for i, p in enumerate(ps):
        alone = generate_joint(adapter, [p], 16, 8, k=4, sampler=s)
        assert alone.tokens[0] == batch.tokens[i] and alone.nfe[0] == batch.nfe[i]
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    r1 = generate_joint(adapter, ps, 16, 8, k=4, sampler=s, temperature=1.0, generator=g1)
    r2 = generate_joint(adapter, ps, 16, 8, k=4, sampler=s, temperature=1.0, generator=g2)
    assert r1.tokens == r2.tokens


def test_bad_arguments(adapter, tok):
    with pytest.raises(ValueError, match="1..8"):
        generate_joint(adapter, prompts(tok), 16, 8, k=9, mode="marginal")
    with pytest.raises(ValueError, match="trained sampler"):
        generate_joint(adapter, prompts(tok), 16, 8, k=4, mode="joint")
    with pytest.raises(ValueError, match="multiple"):
        generate_joint(adapter, prompts(tok), 12, 8, k=1)


def _setup(adapter, tok, gen_len=8):
    x, valid, P = init_canvas(adapter, prompts(tok)[:1], gen_len)
    return x, full_mask(valid), position_ids(valid), P, P + gen_len


def test_exact_joint_is_a_distribution_and_k1_is_exact(adapter, tok):
    x, attn, pos, s, e = _setup(adapter, tok)
    V = adapter.model.config.vocab_size
    paths, P = E.true_joint(adapter, x, attn, pos, s, e, 2, top_m=V)
    assert float(P.sum()) == pytest.approx(1.0, abs=1e-5)
    assert len({frozenset(p) for p in paths}) == len(paths)  # one path per outcome
    m = E.joint_metrics(adapter, None, prompts(tok)[:1], 8, 8, k=1, top_m=V)
    assert m["tv"][0] < 1e-6 and m["coverage"][0] == pytest.approx(1.0, abs=1e-5)
    # other rules may put mass outside the true outcomes, never more than 1
    s_ = perturbed(adapter)
    for smp in (None, s_):
        assert float(E.rule_prob(adapter, x, attn, pos, s, e, paths, 1.0, smp).sum()) <= 1 + 1e-6
    # the marginal rule's own outcomes (top-2 confident positions, every token pair) carry all its mass
    logits, _ = backbone_forward(adapter, x, attn, pos)
    blk = logits[0, s:e].float()
    blk[:, adapter.mask_id] = -float("inf")
    p1, p2 = torch.softmax(blk, -1).amax(-1).topk(2).indices.tolist()
    own = [((p1, a), (p2, b)) for a in range(V) for b in range(V) if a != adapter.mask_id and b != adapter.mask_id]
    assert float(E.rule_prob(adapter, x, attn, pos, s, e, own, 1.0, None).sum()) == pytest.approx(1.0, abs=1e-4)


def test_tv_kl_definition():
    P = torch.tensor([0.5, 0.3])  # 0.2 uncovered
    assert E.tv_kl(P, P)[0] == pytest.approx(0.0) and E.tv_kl(P, P)[1] == pytest.approx(0.0, abs=1e-9)
    tv, kl = E.tv_kl(P, torch.tensor([0.3, 0.3]))
    assert tv == pytest.approx(0.5 * (0.2 + 0.2)) and kl > 0
    assert E.tv_kl(torch.tensor([1.0]), torch.tensor([0.0]))[0] == pytest.approx(1.0)


def test_span_state_has_k_masks_left_and_is_reproducible(adapter, tok):
    """The TV state: the K=1 trajectory's first canvas with exactly k masks left in its block,
    the same for a prompt in every call; every rule then fills all k, so the metrics compare
    token assignments of the same positions."""
    found = [E.span_state(adapter, p, 16, 8, 3, 1.0) for p in prompts(tok)]
    assert any(f is not None for f in found)
    for p, f in zip(prompts(tok), found):
        if f is None:
            continue
        x, s, e = f
        assert x.shape[1] == len(p) + 16 and x[0, :len(p)].tolist() == p
        assert int((x[0, s:e] == adapter.mask_id).sum()) == 3
        assert torch.equal(E.span_state(adapter, p, 16, 8, 3, 1.0)[0], x)
    m = E.joint_metrics(adapter, perturbed(adapter), prompts(tok), 16, 8, k=3, top_m=4)
    assert len(m["tv"]) == len(m["tv_marginal"]) == sum(f is not None for f in found)
    assert all(0 < c <= 1 + 1e-6 for c in m["coverage"]) and all(0 <= t <= 1 for t in m["tv"] + m["tv_marginal"])


def test_decode_samples_the_distribution_evaluate_computes(adapter, tok):
    """Monte Carlo: K=2 joint decoding of a 2-token block follows rule_prob (same rule in both)."""
    s_ = perturbed(adapter)
    x, attn, pos, s, e = _setup(adapter, tok, gen_len=2)
    T = 0.5
    V = adapter.model.config.vocab_size
    paths, _ = E.true_joint(adapter, x, attn, pos, s, e, 2, top_m=V, temperature=T)
    Q = E.rule_prob(adapter, x, attn, pos, s, e, paths, T, s_)
    n = 3000
    g = torch.Generator().manual_seed(0)
    res = generate_joint(adapter, prompts(tok)[:1] * n, 2, 2, k=2, sampler=s_, temperature=T, generator=g,
                         early_exit=False)
    assert res.nfe == [1] * n
    index = {frozenset((p, t) for p, t in path): i for i, path in enumerate(paths)}
    counts = torch.zeros(len(paths))
    for row in res.tokens:
        counts[index[frozenset(enumerate((row + [adapter.eos_ids[0]] * 2)[:2]))]] += 1
    emp = counts / n
    assert 0.5 * float((emp - Q.float()).abs().sum()) < 0.12
    top = int(Q.argmax())
    assert abs(float(emp[top] - Q[top])) < 0.04


@pytest.fixture(scope="module")
def data_dir(adapter, tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("jsdata")
    ps = prompts(tok) + prompts(tok, ("sort 321", "reverse 55"))
    D.generate_data(adapter, ps, out, gen_len=8, block_len=8, max_k=4, states_per_prompt=3, temperature=1.0,
                    batch_size=2, shard_size=2, progress=False)
    return out, ps


def test_data_states_match_trajectory_semantics(adapter, data_dir):
    out, ps = data_dir
    states, meta = D.load_data(out)
    assert meta["complete"] and meta["n_states"] == len(states) > 0
    st = states[0]
    assert st["tgt"].shape == (3, 8, adapter.model.config.vocab_size)
    n = int(st["n_pass"])
    assert 1 <= n <= 3 and (st["pos"][:n + 1] >= 0).all()
    # the target of pass 1 is the real next-step conditional: recompute it with a full forward
    resp = st["resp"].long().clone()
    resp[int(st["block_start"]) + int(st["pos"][0])] = int(st["tok"][0])
    x, valid, P = init_canvas(adapter, [st["prompt"].tolist()], 8)
    x[0, P:] = resp
    logits, _ = backbone_forward(adapter, x, full_mask(valid), position_ids(valid))
    blk = logits[0, P:P + 8].float()
    blk[:, adapter.mask_id] = -float("inf")
    torch.testing.assert_close(st["tgt"][0].float(), torch.log_softmax(blk, -1).half().float(), atol=2e-2, rtol=1e-2)


def test_data_resumes_and_refuses_other_settings(adapter, data_dir, tmp_path):
    out, ps = data_dir
    kw = dict(gen_len=8, block_len=8, max_k=4, states_per_prompt=3, temperature=1.0, batch_size=2, shard_size=2,
              progress=False)
    import shutil
    copy = tmp_path / "d"
    shutil.copytree(out, copy)
    meta = json.loads((copy / D.META_FILE).read_text())
    meta["complete"] = False
    (copy / D.META_FILE).write_text(json.dumps(meta))
    (copy / D.shard_name(1)).unlink()  # an interrupted run: the second shard is missing
    D.generate_data(adapter, ps, copy, **kw)
    a, _ = D.load_data(out)
    b, _ = D.load_data(copy)
    assert len(a) == len(b) and all(torch.equal(x["tgt"], y["tgt"]) for x, y in zip(a, b))
    with pytest.raises(D.DataError, match="other settings"):
        D.generate_data(adapter, ps, copy, **{**kw, "max_k": 3})


def test_loss_starts_at_marginal_kl_and_training_lowers_it(adapter, data_dir):
    out, _ = data_dir
    states, _ = D.load_data(out)
    batch = collate(states, adapter.pad_id)
    loss_fn = make_loss(adapter)
    torch.manual_seed(0)
    s = build_sampler(adapter)
    loss0, m0 = loss_fn(s, batch)
    assert m0["kl"] == pytest.approx(m0["kl_marginal"], rel=1e-3, abs=1e-5)
    assert float(loss0) == pytest.approx(m0["kl"] + m0["kl_next"], rel=1e-4, abs=1e-6)
    opt = torch.optim.Adam(s.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        loss, _ = loss_fn(s, batch)
        loss.backward()
        opt.step()
    assert float(loss_fn(s, batch)[0].detach()) < 0.7 * float(loss0)


@pytest.mark.slow
def test_train_export_bench_end_to_end(adapter, tok, tmp_path):
    from accel.decoding.bench import run_bench
    from accel.recipes.joint_sampler import export, train
    from accel.recipes.joint_sampler.config import Config
    from accel.trainers.config import ConfigError

    model_dir = tmp_path / "tiny"
    adapter.model.save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    cfg = Config(output_dir=str(tmp_path / "run"), backbone=str(model_dir), device="cpu", tasks=["pick3"],
                 n_per_task=3, n_per_dependent_task=3, gen_len=8, block_len=8, max_k=4, max_steps=3, save_steps=3,
                 per_device_train_batch_size=4, eval_n=1, top_m=2, logging_steps=1)
    run = train.run(cfg)
    metrics = json.loads((run / train.METRICS_FILE).read_text())
    assert metrics["n"] == 2 and 0 <= metrics["tv"] <= 1 and 0 <= metrics["tv_marginal"] <= 1
    ckpt = export.export(run, tmp_path / "ckpt")
    with pytest.raises(Exception, match="1..8"):
        export.export(run, tmp_path / "ckpt2", k=9)
    from accel.recipes.targets import load_target
    target = load_target(str(ckpt))
    report = run_bench(target, None, ["pick3"], limit=2, gen_len=8, batch_size=2)
    rows = {r["method"]: r for r in report["rows"] if r["task"] == "all"}
    assert list(rows) == ["sequential", "marginal", "joint-sampler"]
    assert "tv" in rows["marginal"] and "tv" in rows["joint-sampler"] and "tv" not in rows["sequential"]
    assert rows["joint-sampler"]["nfe"] <= 2 and rows["sequential"]["nfe"] > rows["joint-sampler"]["nfe"]
    assert rows["joint-sampler"]["sampler_passes"] > 0
    tvrep = run_bench(target, ["joint-tv"], ["pick3"], limit=1, gen_len=8, batch_size=1)
    row = tvrep["rows"][-1]
    assert {"tv", "tv_marginal", "kl", "kl_marginal", "coverage"} <= set(row)
    with pytest.raises(ConfigError, match="max_k"):
        Config(max_k=9).validate()


def test_untrained_sampler_is_the_marginal_on_a_shifted_backbone(tok):
    """Dream-style shift: the slot of position p predicts p+1. The token input of a position
    unmasked in this step must not leak into that slot's logits (issue 8: with tied embeddings it
    boosted repeating the chosen token next to it)."""
    from accel.recipes.joint_sampler.layer import additive_mask, sampler_logits
    m = make_model("dllm", tok, seed=0, **TINY).eval()
    ad = Adapter(model=m, tokenizer=tok, family="builtin", kind="dllm", source="tiny", mask_id=tok.mask_token_id,
                 eos_ids=(tok.eos_token_id,), shift_logits=True)
    s = build_sampler(ad).eval()
    ps = prompts(tok)
    x, valid, P = init_canvas(ad, ps, 8)
    logits, h = backbone_forward(ad, x, full_mask(valid), position_ids(valid))
    new = torch.zeros_like(x, dtype=torch.bool)
    new[:, P + 2] = True
    x[:, P + 2] = tok.convert_tokens_to_ids("7")
    with torch.no_grad():
        q = sampler_logits(ad, s, h, x, new, additive_mask(full_mask(valid)), position_ids(valid))
    torch.testing.assert_close(q, logits, atol=1e-4, rtol=1e-4)  # P + 3 included


def _rec(block, pos, tok, probs):
    lp = torch.log(torch.tensor(probs, dtype=torch.float32).clamp(min=1e-9))
    return {"block": block, "pos": pos, "tok": tok, "lp": lp.half(), "resp": torch.zeros(4, dtype=torch.long)}


def test_dependence_and_dependence_first_selection():
    # block of 4 positions, vocab 2: only step 2's token changes a later distribution (step 3's at
    # position 3: 0.5/0.5 -> 1/0).
    a = [[1, 0], [1, 0], [0.5, 0.5], [0.5, 0.5]]
    steps = [_rec(0, 0, 0, a), _rec(0, 1, 0, a), _rec(0, 2, 0, a), _rec(0, 3, 0, [[1, 0]] * 4)]
    assert D.dependence(steps, 2, 2) == pytest.approx(0.5, abs=1e-3)
    assert D.dependence(steps, 0, 4) == pytest.approx(0.5, abs=1e-3)  # window reaches step 3
    assert D.dependence(steps, 0, 2) == pytest.approx(0.0, abs=1e-3)  # window {0, 1}: nothing changes
    g = torch.Generator().manual_seed(0)
    assert D.select_states(steps, 2, 5, g, n_plain=0, threshold=0.05) == [2]
    assert D.select_states(steps, 2, 5, g, n_plain=1, threshold=0.05) in ([0, 2], [1, 2])
    assert D.select_states(steps, 2, 5, g) == [0, 1, 2]  # uniform (old rule): every step with a successor


def test_confidence_logit_ranks_like_confidence_and_order_loss(adapter, data_dir):
    from accel.recipes.joint_sampler.loss import confidence_logit
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 9, generator=g) * 4
    logits[0, 0, 0] = 60.0  # near-certain positions stay distinct
    logits[0, 1, 0] = 59.0
    c = confidence_logit(logits)
    assert torch.equal(c[1:].argsort(-1), torch.softmax(logits[1:].double(), -1).amax(-1).argsort(-1))
    assert float(c[0, 0]) > float(c[0, 1]) + 0.9  # both p == 1.0 even in float64
    out, _ = data_dir
    states, _ = D.load_data(out)
    batch = collate(states, adapter.pad_id)
    torch.manual_seed(0)
    s = build_sampler(adapter)
    l0, m0 = make_loss(adapter, order_weight=1.0)(s, batch)
    b0, _ = make_loss(adapter)(s, batch)
    assert float(l0) == pytest.approx(float(b0) + m0["order_ce"], rel=1e-4)


def test_builtin_training_prompts_weight_the_dependent_tasks():
    from collections import Counter

    from accel.recipes.joint_sampler.config import Config
    from accel.recipes.joint_sampler.train import training_prompts
    n = Counter(r["task"] for r in training_prompts(Config(tasks=["copy", "shuffle", "arith"], n_per_task=3,
                                                           n_per_dependent_task=5)))
    assert n == {"copy": 3, "shuffle": 5, "arith": 5}
    assert Counter(r["task"] for r in training_prompts(Config(tasks=["sort"], n_per_task=4))) == {"sort": 4}


def test_token_input_starts_at_the_hidden_states_scale(adapter):
    """The chosen token's projected embedding starts as long as the hidden states it is added to."""
    from accel.recipes.joint_sampler.layer import check_head
    s = build_sampler(adapter)
    scale = check_head(adapter)
    assert scale > 0 and torch.allclose(s.tok_proj.weight, torch.eye(s.cfg["hidden_size"]) * scale)
    emb = adapter.model.get_input_embeddings().weight[:8]
    x = torch.tensor([[adapter.pad_id] + [adapter.mask_id] * 8])
    valid = torch.ones_like(x, dtype=torch.bool)
    _, h = backbone_forward(adapter, x, full_mask(valid), position_ids(valid))
    ratio = s.tok_proj(emb).norm(dim=-1).mean() / h.norm(dim=-1).mean()
    assert 0.5 < float(ratio) < 2.0


GRAD_SCRIPT = """
import torch
from accel.recipes.joint_sampler.threads import pin_gemm_order
assert pin_gemm_order(), "MKL_CBWR did not take in a fresh process"
from accel.recipes.joint_sampler.layer import SamplerLayer
cfg = dict(hidden_size=192, num_attention_heads=4, num_key_value_heads=4, intermediate_size=512, rms_norm_eps=1e-6,
           rope_theta=10000.0, max_position_embeddings=256, hidden_act="silu", head_dim=48)
grads = []
for n in (1, 2):
    torch.set_num_threads(n)
    torch.manual_seed(0)
    layer = SamplerLayer(cfg)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.05)
    h, emb, new = torch.randn(48, 96, 192), torch.randn(48, 96, 192), torch.rand(48, 96) < 0.1
    layer(h, emb, new, torch.zeros(48, 1, 96, 96), torch.arange(96).expand(48, -1)).square().mean().backward()
    grads.append(torch.cat([p.grad.flatten() for p in layer.parameters()]))
assert torch.equal(*grads), float((grads[0] - grads[1]).abs().max())
"""


def test_training_gradients_are_the_same_at_1_and_2_threads():
    """What moved the short-world TV (threads.py): the layer's weight gradients reduce over ~4600
    rows x positions here, which MKL splits across threads (without the pin these gradients differ
    at 1 and 2 threads, by ~5e-13 in this script); `pin_gemm_order` in a fresh process makes them
    bitwise equal. A subprocess: MKL reads the mode once, and this test process has run GEMMs."""
    import subprocess
    import sys
    if "mkl" not in torch.__config__.show().lower():
        pytest.skip("torch is not built with MKL")
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    r = subprocess.run([sys.executable, "-c", GRAD_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
