"""EAGLE-3 recipe: draft model, training-time test, tree decoding (identical to greedy), kernel, export."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from accel.trainers.loading import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_listed_and_tiny_config_loads():
    from accel.recipes import get
    from accel.recipes.eagle3.config import Config
    assert get("eagle3").group == "train"
    cfg = load_config(Config, str(ROOT / "recipes/configs/eagle3/tiny.yaml"), [], recipe="eagle3")
    assert cfg.backbone == "builtin:ar" and cfg.ttt_steps >= 1


def test_default_feature_layers():
    from accel.recipes.eagle3.model import default_feature_layers
    assert default_feature_layers(32) == [2, 16, 29]          # EAGLE-3's low / mid / high on Llama-3-8B
    assert default_feature_layers(30) == [2, 15, 27]          # SmolLM2-135M
    assert default_feature_layers(4) == [1, 2, 3]             # the built-in teacher: spread, distinct
    for L in range(4, 40):
        ids = default_feature_layers(L)
        assert len(set(ids)) == 3 and 0 < min(ids) and max(ids) <= L - 1


def test_draft_vocab_and_mappings():
    from accel.recipes.eagle3.model import Eagle3Draft, build_draft_vocab, layer_config
    pairs = [([1], [5, 5, 7, 9]), ([1], [7, 5, 3])]
    ids = build_draft_vocab(pairs, 12, 4, eos_ids=[2])
    assert ids.tolist() == [2, 3, 5, 7]          # 5 x3, 7 x2, eos x2, then 3 (ties: lower id)
    cfg = layer_config(dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1,
                            vocab_size=12, rms_norm_eps=1e-6))
    d = Eagle3Draft(cfg, [0, 1, 1], ids)
    assert d.draft_ids.tolist() == ids.tolist() and (d.d2t >= 0).all()
    assert d.t2d.nonzero().flatten().tolist() == ids.tolist()
    names = set(d.state_dict())
    assert {"fc.weight", "layers.0.self_attn.q_proj.weight", "layers.0.hidden_norm.weight", "norm.weight",
            "lm_head.weight", "d2t", "t2d"} <= names
    assert d.layers[0].self_attn.q_proj.weight.shape == (16, 32)  # q/k/v read [E(x); g]: 2H


def _tiny_draft(seed=0):
    from accel.recipes.eagle3.model import Eagle3Draft, layer_config
    torch.manual_seed(seed)
    cfg = layer_config(dict(hidden_size=16, intermediate_size=32, num_attention_heads=4, num_key_value_heads=2,
                            vocab_size=20, rms_norm_eps=1e-6, head_dim=4))
    return Eagle3Draft(cfg, [0, 1, 2], torch.arange(2, 18)).eval()


def test_unroll_matches_incremental_decoding():
    """The training-time test's step k at position t equals what the drafter computes for a depth-k chain
    node after t: its cache pass over positions <= t, then k chained steps on the draft's own outputs."""
    from accel.recipes.eagle3.drafter import Eagle3Drafter
    d = _tiny_draft()
    T, steps, t = 7, 3, 3
    feats, emb = torch.randn(1, T, 48), torch.randn(1, T, 16)
    valid, pos = torch.ones(1, T, dtype=torch.bool), torch.arange(T)[None]
    with torch.no_grad():
        full = d.unroll(feats, emb, valid, pos, steps)
        dr = Eagle3Drafter(d, torch.nn.Embedding(20, 16))
        fl = dr.fused
        h = dr._push(d.fc(feats[:, :t + 1]), emb[:, :t + 1], valid[:, :t + 1], pos[:, :t + 1])[:, -1:]
        assert torch.allclose(fl.logits(h)[0, 0], full[0][0, t], atol=1e-5)
        K, V = dr.k, dr.v
        for k in range(1, steps):
            q, kk, vv = fl.qkv(emb[:, t + k:t + k + 1], h, pos[:, t:t + 1] + k)
            K, V = torch.cat([K, kk], 2), torch.cat([V, vv], 2)
            h = fl.attend(h, q, K, V, torch.ones(1, 1, K.shape[2], dtype=torch.bool))
            assert torch.allclose(fl.logits(h)[0, 0], full[k][0, t], atol=1e-5), k


def _observed_positions(T: int):
    """A tiny draft, an embedding, and T accepted positions to observe (features, tokens, validity, positions)
    with the next step's root."""
    d = _tiny_draft()
    feats, toks = torch.randn(1, T, 48), torch.randint(2, 18, (1, T))
    return (d, torch.nn.Embedding(20, 16), feats, toks, torch.ones(1, T, dtype=torch.bool), torch.arange(T)[None],
            torch.tensor([5]))


def test_held_step_joins_the_next_pass():
    """A step the draft did not draft (context lookup drafted it) leaves its positions pending; they join the
    next observed ones, so the next draft equals one that saw every position at once."""
    from accel.recipes.eagle3.drafter import Eagle3Drafter
    from accel.decoding.tree import TreeSpec
    T = 9
    d, emb, feats, toks, valid, pos, root = _observed_positions(T)
    with torch.no_grad():
        whole = Eagle3Drafter(d, emb)
        whole.observe(feats, valid, pos, toks, prefill=True)
        a = whole.draft(None, root, TreeSpec.chain(2))
        held = Eagle3Drafter(d, emb)
        held.observe(feats[:, :4], valid[:, :4], pos[:, :4], toks[:, :4], prefill=True)  # then a lookup step: no draft
        held.observe(feats[:, 4:], valid[:, 4:], pos[:, 4:], toks[:, 4:])  # its accepted path, toks[:, 4] its root
        b = held.draft(None, root, TreeSpec.chain(2))
    assert torch.equal(a, b)
    assert torch.allclose(whole.k, held.k, atol=1e-6) and whole.k.shape[2] == T


def test_chain_levels_match_the_chain_draft():
    """The gate's level-by-level chain (`chain_levels`) drafts the tokens `draft` drafts on a chain, its
    probabilities are the draft's softmax at them, and it leaves the draft's cache as `draft` does."""
    from accel.recipes.eagle3.drafter import Eagle3Drafter
    from accel.decoding.tree import TreeSpec
    T = 6
    d, emb, feats, toks, valid, pos, root = _observed_positions(T)
    with torch.no_grad():
        a, b = Eagle3Drafter(d, emb), Eagle3Drafter(d, emb)
        for dr in (a, b):
            dr.observe(feats, valid, pos, toks, prefill=True)
        chain = a.draft(None, root, TreeSpec.chain(3))[0, 1:].tolist()
        levels = list(b.chain_levels(None, root, 3))
    assert [int(t[0]) for t, _ in levels] == chain
    assert all(0 < float(p[0]) <= 1 for _, p in levels)
    assert torch.equal(a.k, b.k) and a.k.shape[2] == T


def test_fused_decode_layer_matches_modules():
    """The drafter's fused layer (q|k|v one matmul, RoPE table) computes what `DraftLayer` does."""
    from accel.recipes.eagle3.drafter import FusedLayer
    d = _tiny_draft(1)
    fl, layer = FusedLayer(d), d.layers[0]
    emb, g, pos = torch.randn(2, 5, 16), torch.randn(2, 5, 16), torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])
    mask = torch.ones(2, 5, 5, dtype=torch.bool).tril()
    with torch.no_grad():
        a = fl.attend(g, *fl.qkv(emb, g, pos), mask)
        b = layer.attend(g, *layer.qkv(emb, g, *d.rope(g, pos)), mask)
        assert torch.allclose(a, b, atol=1e-5) and torch.allclose(fl.logits(a), d.logits(b), atol=1e-5)


def test_draft_topk_reference_semantics():
    from accel.recipes.eagle3.kernels import draft_topk
    x = torch.tensor([[0.5, 2.0, 2.0, -1.0, float("-inf")], [1.0, 1.0, 1.0, 1.0, 1.0]])
    d2t = torch.tensor([10, 10, 20, 0, 0])
    ids, vals = draft_topk(x, 3, d2t)
    assert ids.tolist() == [[11, 22, 10], [10, 11, 22]]   # ties: the lower draft id first
    assert vals[0].tolist() == [2.0, 2.0, 0.5]
    ids, _ = draft_topk(x[None], 2)                       # leading dims kept, no mapping
    assert ids.shape == (1, 2, 2) and ids[0, 0].tolist() == [1, 2]


def test_draft_topk_triton_matches_reference_interpreted():
    pytest.importorskip("triton")
    code = r"""
import torch
from accel.recipes.eagle3.kernels import draft_topk_ref, draft_topk_triton
g = torch.Generator().manual_seed(0)
for R, V, k, bv in [(3, 64, 4, 16), (2, 100, 6, 32), (4, 37, 1, 64)]:
    x = torch.randn(R, V, generator=g)
    x[0, 5] = x[0, 9] = x[0].max() + 1  # a tie at the top
    x = x.round(decimals=1)              # many ties
    d2t = torch.randint(0, 50, (V,), generator=g)
    for dt in (torch.float32, torch.bfloat16):
        for m in (d2t, None):
            a = draft_topk_triton(x.to(dt), k, m, block_v=bv)
            b = draft_topk_ref(x.to(dt), k, m)
            assert torch.equal(a[0], b[0]), (R, V, k, dt, a[0], b[0])
            assert torch.equal(a[1], b[1])
print("ok")
"""
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([os.sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_export_rejects_unfinished_run_and_bad_format(tmp_path, check_export_refusals):
    from accel.recipes.eagle3.export import export
    check_export_refusals(export, tmp_path, "no finished draft", "medusa", "speculators")


def test_train_export_bench_identical_to_greedy(tmp_path, recipe_cfg):
    """A few steps on a random-init target, then batched tree and chain decoding equal greedy token for token."""
    from accel.decoding.bench import run_bench
    from accel.decoding.checkpoint import load_checkpoint
    from accel.recipes.eagle3.export import export
    from accel.recipes.eagle3.train import run
    from accel.recipes.targets import load_target
    cfg = recipe_cfg("eagle3", "backbone=random:ar", "max_steps=3", "save_steps=3", "n_per_task=4", "tasks=[copy,sort]",
                     "eval_n=2", "gen_len=12", "per_device_train_batch_size=4", "tree_nodes=6", "ttt_steps=3",
                     "draft_vocab_size=40")
    run_dir = run(cfg)
    meta = json.loads((run_dir / "final" / "eagle3.json").read_text())
    assert meta["draft_vocab_size"] == 40 and len(meta["stats"]["topk_accuracy"]) == 3
    rec = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = set().union(*rec)
    assert {"est_accept_chain", "step0_acc", "step2_acc", "step2_loss", "eval_est_accept_tree"} <= logged
    assert len((run_dir / "self_distill.jsonl").read_text().splitlines()) == 8
    ck = load_checkpoint(export(run_dir, tmp_path / "ck", tree_nodes=5))
    assert ck.accel["backbone"] == "." and 1 <= len(ck.accel["eagle3"]["tree"]) <= 5
    rep = run_bench(load_target(str(ck.path)), tasks=["copy", "sort"], limit=3, gen_len=12, batch_size=3)
    rows = {r["method"]: r for r in rep["rows"] if r["task"] == "all"}
    assert list(rows) == ["greedy", "eagle3", "eagle3-static", "eagle3-chain", "eagle3-chain+lookup"]
    for m in ("eagle3", "eagle3-static", "eagle3-chain", "eagle3-chain+lookup"):
        assert rows[m]["tokens"] == rows["greedy"]["tokens"] and rows[m]["accuracy"] == rows["greedy"]["accuracy"]
        assert rows[m]["nfe"] <= rows["greedy"]["nfe"]
    with pytest.raises(Exception, match="random-init"):
        export(run_dir, tmp_path / "spec", format="speculators")


def _builtin_draft_run(tmp_path, recipe_cfg, steps=None):
    """An untrained draft on the built-in teacher saved as a finished run (no training: exports and
    decoding are what is under test)."""
    from accel.models.backbone import load_backbone
    from accel.models.weights import builtin_dir
    if not (builtin_dir("ar") / "model.safetensors").exists():
        pytest.skip("built-in AR teacher not in this checkout")
    from accel.recipes.eagle3.train import build_draft, save_final
    cfg = recipe_cfg("eagle3", "draft_vocab_size=64", "ttt_steps=3")
    adapter = load_backbone("builtin:ar", device="cpu")
    torch.manual_seed(0)
    draft = build_draft(cfg, adapter, [([3], list(range(4, 60)))])
    stats = {"topk_accuracy": [[0.9, 0.05, 0.0, 0.0], [0.7, 0.2, 0.0, 0.0], [0.6, 0.2, 0.0, 0.0]]}
    save_final(draft, cfg, tmp_path / "run" / "final", stats)
    return cfg, adapter, draft


def test_builtin_decoding_identical_to_greedy_batched(tmp_path, recipe_cfg):
    """Tree and chain decoding with a draft on the real teacher, batch > 1 with ragged prompts, equal greedy."""
    from accel.decoding.ar import generate_greedy
    from accel.decoding.tree import TreeSpec, generate_tree
    from accel.recipes.eagle3.drafter import Eagle3Drafter
    _, adapter, draft = _builtin_draft_run(tmp_path, recipe_cfg)
    tok = adapter.tokenizer
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in ("copy 1 2 3", "sort 9 3 5 1 7", "copy 4")]
    g = generate_greedy(adapter, prompts, max_new_tokens=16)
    drafter = Eagle3Drafter(draft, adapter.model.get_input_embeddings())
    for tree in (TreeSpec([(0,), (1,), (0, 0), (0, 1), (1, 0), (0, 0, 0)]), TreeSpec.chain(3)):
        res = generate_tree(adapter, drafter, tree, prompts, max_new_tokens=16)
        assert res.tokens == g.tokens
    dyn = Eagle3Drafter(draft, adapter.model.get_input_embeddings(), dynamic=(4, 3, 7))  # EAGLE-2's tree
    res = generate_tree(adapter, dyn, TreeSpec.chain(1), prompts, max_new_tokens=16)
    assert res.tokens == g.tokens


def test_context_lookup_in_front_of_the_draft(tmp_path, recipe_cfg):
    """Steps drafted by context lookup skip the draft layer; the positions they accept join the draft's next
    pass. Batch 1 (lookups happen) and the ragged batch (the draft drafts every step) equal greedy, and the
    held positions leave the draft's own cache as long as the sequence."""
    from accel.decoding.ar import generate_greedy
    from accel.decoding.lookup import LookupDrafter
    from accel.decoding.tree import TreeSpec, generate_tree
    from accel.recipes.eagle3.drafter import Eagle3Drafter
    _, adapter, draft = _builtin_draft_run(tmp_path, recipe_cfg)
    tok = adapter.tokenizer
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in ("copy 1 2 1 2 1 2", "sort 9 3 5 1 7", "copy 4 4 4")]
    g = generate_greedy(adapter, prompts, max_new_tokens=24)
    inner = Eagle3Drafter(draft, adapter.model.get_input_embeddings())
    drafter = LookupDrafter(inner)
    for p, ref in zip(prompts, g.tokens):
        res = generate_tree(adapter, drafter, TreeSpec.chain(2), [p], max_new_tokens=24)
        assert res.tokens == [ref]
        if inner.pending is None:  # the last step was the draft's: its cache holds every position but the last step's
            assert inner.k.shape[2] <= len(p) + len(ref)
    assert 0 < drafter.lookups < drafter.steps
    assert generate_tree(adapter, drafter, TreeSpec.chain(2), prompts, max_new_tokens=24).tokens == g.tokens


def test_step_tree_buffers():
    """A dynamic step's tree from parent ids has the verifier's buffers: ancestor mask, depths, leaf paths."""
    from accel.recipes.eagle3.drafter import StepTree
    b = StepTree([0, 0, 0, 1, 1, 3]).buffers("cpu")   # root -> 1, 2; 1 -> 3, 4; 3 -> 5
    assert b.depth.tolist() == [0, 1, 1, 2, 2, 3]
    assert b.attn_mask[5].nonzero().flatten().tolist() == [0, 1, 3, 5]
    assert b.retrieve.tolist() == [[0, 2, -1, -1], [0, 1, 4, -1], [0, 1, 3, 5]]


def test_export_accel_and_speculators_layout(tmp_path, recipe_cfg):
    from accel.recipes.targets import load_target
    from accel.recipes.eagle3.export import export
    _builtin_draft_run(tmp_path, recipe_cfg)
    ck = export(tmp_path / "run", tmp_path / "ck", tree_nodes=3)
    sec = json.loads((ck / "config.json").read_text())["accel"]
    assert sec["backbone"] == "builtin:ar" and sec["weights"] == ["draft.safetensors"]
    assert sec["eagle3"]["tree"] == [[0], [0, 0], [0, 0, 0]] and sec["eagle3"]["feature_layers"] == [1, 2, 3]
    tgt = load_target(str(ck), device="cpu")
    assert tgt.default_methods == ["greedy", "eagle3", "eagle3-static", "eagle3-chain", "eagle3-chain+lookup"]
    sp = export(tmp_path / "run", tmp_path / "spec", format="speculators")
    c = json.loads((sp / "config.json").read_text())
    assert c["speculators_model_type"] == "eagle3" and c["draft_vocab_size"] == 64
    assert c["eagle_aux_hidden_state_layer_ids"] == [1, 2, 3]
    assert c["transformer_layer_config"]["model_type"] == "llama"
    assert c["transformer_layer_config"]["num_hidden_layers"] == 1
    v = c["speculators_config"]["verifier"]
    assert Path(v["name_or_path"]).is_dir() and v["architectures"] == ["LlamaForCausalLM"]
    from safetensors.torch import load_file
    w = load_file(str(sp / "model.safetensors"))
    assert w["d2t"].shape == (64,) and w["t2d"].shape == (77,) and int(w["t2d"].sum()) == 64
    assert torch.equal(w["d2t"] + torch.arange(64), w["t2d"].nonzero().flatten())
    assert {"fc.weight", "layers.0.self_attn.q_proj.weight", "layers.0.hidden_norm.weight", "norm.weight",
            "lm_head.weight", "embed_tokens.weight"} <= set(w)
    assert w["fc.weight"].shape == (128, 384) and w["lm_head.weight"].shape == (64, 128)


SPEC_VENV = Path(os.environ.get("ACCEL_SPECULATORS_VENV", "/tmp/accel-speculators-venv"))


@pytest.mark.speculators
@pytest.mark.skipif(not (SPEC_VENV / "bin" / "python").exists(),
                    reason="no speculators venv (create it with scripts/speculators_check.sh)")
def test_speculators_package_logits_match(tmp_path, recipe_cfg):
    """The speculators package loads the export and its draft logits equal accel's (fp32, <= 1e-4)."""
    _builtin_draft_run(tmp_path, recipe_cfg)
    r = subprocess.run(["bash", str(ROOT / "scripts/speculators_check.sh"), str(tmp_path / "run"), str(SPEC_VENV)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "max abs diff" in r.stdout


@pytest.fixture(scope="module")
def feature_states(tmp_path_factory):
    """Self-distilled responses of the random-init target with its last and feature-layer states cached."""
    from accel.recipes.eagle3.config import Config
    from accel.recipes.eagle3.train import feature_layers
    from accel.recipes.sft.train import load_model
    from accel.recipes.shared.self_distill import self_distill
    adapter = load_model(Config(backbone="random:ar"))
    layers = feature_layers(Config(), adapter)
    d = tmp_path_factory.mktemp("e3states")
    prompts = ["copy 12", "copy 3", "sort 21", "copy 9", "reverse 42", "sort 7 3"]
    self_distill(adapter, prompts, d / "sd.jsonl", batch_size=4, max_new_tokens=10, states_dir=d / "states",
                 feature_layers=layers)
    return adapter, layers, d / "states"


def test_cached_target_matches_the_online_forward(feature_states):
    """What a cached batch gives the loss (features, the target's logits over the draft vocabulary, its greedy
    tokens) is what the online target forward gives on the same sequences, up to float16 storage."""
    from accel.recipes.eagle3 import cached
    from accel.recipes.eagle3.config import Config
    from accel.recipes.eagle3.train import build_draft, forward_draft, step_ranks, target_forward, ttt_loss
    from accel.models.masks import position_ids
    adapter, layers, path = feature_states
    cache = cached.load_states(str(path), adapter, layers)
    assert cache.f.shape == (cache.h.shape[0], 3 * cache.h.shape[1])
    torch.manual_seed(0)
    draft = build_draft(Config(backbone="random:ar", draft_vocab_size=24), adapter, cached.pairs(cache, range(6)))
    batch = cached.collate(cache, adapter.tokenizer.pad_token_id)([0, 2, 4, 5])
    base = adapter.model.eval()
    feats, logits, greedy, emb = cached.target_from_batch(base, batch, draft.draft_ids)
    on_feats, on_logits, on_greedy, on_emb = target_forward(base, layers, batch["ids"], batch["valid"],
                                                            position_ids(batch["valid"]), draft.draft_ids)
    has_state = batch["valid"].clone()
    has_state[:, -1] = False  # a sequence's last position has no cached state (nothing follows it)
    torch.testing.assert_close(feats[has_state], on_feats[has_state], atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(logits[has_state], on_logits[has_state], atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(emb, on_emb)
    resp = greedy >= 0  # the next token is a response token: the target's own greedy choice
    assert int(resp.sum()) > 10 and torch.equal(greedy[resp], on_greedy[resp])
    online = dict(batch)
    del online["feats"], online["h"]
    steps_c, tl_c, g_c = forward_draft(draft, base, batch, 3)
    steps_o, tl_o, g_o = forward_draft(draft, base, online, 3)
    loss_c, _ = ttt_loss(steps_c, tl_c, batch, 0.8)
    loss_o, _ = ttt_loss(steps_o, tl_o, online, 0.8)
    assert abs(float(loss_c.detach()) - float(loss_o.detach())) < 1e-2 * float(loss_o.detach())
    ranks_c, usable_c, anchor_c = step_ranks(steps_c, batch, g_c, draft.t2d, 4)
    ranks_o, usable_o, anchor_o = step_ranks(steps_o, online, g_o, draft.t2d, 4)
    assert torch.equal(anchor_c, anchor_o) and torch.equal(usable_c, usable_o)
    assert (ranks_c[usable_c] == ranks_o[usable_o]).float().mean() > 0.95


def test_compute_states_writes_the_same_feature_states(feature_states, tmp_path):
    """Full forwards over the self-distilled sequences (`compute_states`, for data generated elsewhere) cache
    the same feature states as the generation did; a directory keeps the layers it was written with."""
    from accel.recipes.shared.state_cache import StateCache, StateCacheError, compute_states
    adapter, layers, path = feature_states
    src = StateCache(path)
    seqs, plens = [s.ids for s in src.seqs], [s.prompt_len for s in src.seqs]
    compute_states(adapter, seqs, plens, tmp_path / "st", batch_size=4, feature_layers=layers)
    got = StateCache(tmp_path / "st", expect_n=len(seqs))
    assert got.feature_layers == layers
    torch.testing.assert_close(got.f.float(), src.f.float(), atol=3e-2, rtol=3e-2)
    with pytest.raises(StateCacheError, match="feature layers"):
        compute_states(adapter, seqs, plens, tmp_path / "st", batch_size=4)


def test_train_from_cached_states_decodes_greedy(feature_states, tmp_path, recipe_cfg):
    """`states=DIR`: training reads the cache (no self-distillation file, no target forward), the export
    decodes exactly greedy; a directory without the draft's feature layers is refused in one line."""
    from accel.core.errors import UserError
    from accel.decoding.bench import run_bench
    from accel.decoding.checkpoint import load_checkpoint
    from accel.recipes.eagle3.export import export
    from accel.recipes.eagle3.train import run
    from accel.recipes.targets import load_target
    _, layers, path = feature_states
    cfg = recipe_cfg("eagle3", "backbone=random:ar", f"states={path}", "max_steps=3", "save_steps=3", "eval_n=2",
                     "per_device_train_batch_size=2", "tree_nodes=4", "ttt_steps=2", "draft_vocab_size=30")
    run_dir = run(cfg)
    meta = json.loads((run_dir / "final" / "eagle3.json").read_text())
    assert meta["feature_layers"] == layers and len(meta["stats"]["topk_accuracy"]) == 2
    assert not (run_dir / "self_distill.jsonl").exists()
    rec = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"step1_acc", "eval_est_accept_tree"} <= set().union(*rec)
    ck = load_checkpoint(export(run_dir, tmp_path / "ck"))
    rep = run_bench(load_target(str(ck.path)), tasks=["copy", "sort"], limit=2, gen_len=10, batch_size=2)
    rows = {r["method"]: r for r in rep["rows"] if r["task"] == "all"}
    for m in ("eagle3", "eagle3-chain"):
        assert rows[m]["tokens"] == rows["greedy"]["tokens"]
    wrong = recipe_cfg("eagle3", "backbone=random:ar", f"states={path}", f"feature_layers=[{layers[0]},{layers[1]},"
                       f"{layers[1]}]", "output_dir=" + str(tmp_path / "w"))
    with pytest.raises(UserError, match="feature layers"):
        run(wrong)
