"""LLaDA and Dream as published: tiny random-weight models built from their shipped code
(`published_dllm` in conftest.py), through the library and through every dLLM command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from accel.cli.main import app
from accel.models.backbone import BackboneError, load_backbone

runner = CliRunner()
FAMILIES = ("llada", "dream")
CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"
SMALL = ["prompts=builtin", "tasks=[arith]", "n_per_task=2", "gen_len=16", "block_len=8", "max_steps=2",
         "save_steps=2", "device=cpu"]


@pytest.fixture(scope="module")
def adapters(published_dllm):
    torch.set_num_threads(1)
    return {f: load_backbone(published_dllm[f], trust_remote_code=True) for f in FAMILIES}


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _one_line(result, *words):
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]


def _prompts(adapter):
    tok = adapter.tokenizer
    return [tok.encode("calc 1+2"), tok.encode("reverse 31415 and then some more words here")]


# ------------------------------------------------------------------ loading and the self-check
def test_families_load_with_their_conventions(adapters):
    ll, dr = adapters["llada"], adapters["dream"]
    assert (ll.family, ll.mask_id, ll.shift_logits) == ("llada", 126336, False)
    assert set(ll.eos_ids) == {126081, 126348}
    assert (dr.family, dr.mask_id, dr.shift_logits) == ("dream", 151666, True)
    assert dr.tokenizer.convert_tokens_to_ids("<|im_end|>") in dr.eos_ids and dr.tokenizer.eos_token_id in dr.eos_ids
    assert ll.extra["block_causal"] and dr.extra["block_causal"]
    assert ll.supports_cache and dr.supports_cache  # LLaDA: accel's cached forward; Dream: its own cache


def test_dream_logits_identical_across_loads(published_dllm, adapters):
    again = load_backbone(published_dllm["dream"], trust_remote_code=True)
    x = torch.tensor([_prompts(again)[1]])
    with torch.no_grad():
        a, _ = adapters["dream"].forward(x)
        b, _ = again.forward(x)
    assert torch.isfinite(a).all() and torch.equal(a, b)


def test_without_the_flag_loading_names_it(published_dllm):
    for f in FAMILIES:
        with pytest.raises(BackboneError, match="--trust-remote-code"):
            load_backbone(published_dllm[f])


def test_load_failure_in_shipped_code_is_one_line(published_dllm, tmp_path):
    import shutil
    d = tmp_path / "broken"
    shutil.copytree(published_dllm["llada"], d)
    d.chmod(0o755)
    code = d / "modeling_llada.py"
    code.chmod(0o644)
    code.write_text(code.read_text().replace("        super().__init__(config)\n",
                                             "        super().__init__(config)\n        raise RuntimeError('boom')\n", 1))
    with pytest.raises(BackboneError, match="RuntimeError: boom"):
        load_backbone(str(d), trust_remote_code=True)


def test_nobias_variant_is_caught(published_dllm):
    from accel.decoding.dllm import generate_vanilla
    a = load_backbone(published_dllm["llada-nobias"], trust_remote_code=True)
    assert a.extra["block_causal"] is False
    with pytest.raises(BackboneError, match="cannot share a batch"):  # its padding would be attended
        generate_vanilla(a, _prompts(a), gen_len=8, block_len=8)
    assert len(generate_vanilla(a, _prompts(a)[:1], gen_len=8, block_len=8).tokens[0]) >= 1
    out = _ok(runner.invoke(app, ["bench", published_dllm["llada-nobias"], "--trust-remote-code", "-m", "fast-dllm",
                                  "--limit", "2", "--task", "arith", "--gen-len", "8", "--block-len", "8"]))
    assert "fast-dllm" in out.stdout  # the bench decodes it one prompt at a time


# ------------------------------------------------------------------ decoding
@pytest.mark.parametrize("family", FAMILIES)
def test_vanilla_batched_equals_unbatched(adapters, family):
    from accel.decoding.dllm import generate_vanilla
    a = adapters[family]
    ps = _prompts(a)
    both = generate_vanilla(a, ps, gen_len=16, block_len=8)
    alone = [generate_vanilla(a, [p], gen_len=16, block_len=8).tokens[0] for p in ps]
    assert both.tokens == alone


def test_dream_d2f_cached_equals_uncached(adapters):
    from accel.recipes.d2f.decode import generate_d2f
    a = adapters["dream"]
    kw = dict(gen_len=16, block_len=4, tau_add=0.1, tau_act=0.5, tau_conf=0.3)
    cached = generate_d2f(a, _prompts(a), cache=True, **kw)
    plain = generate_d2f(a, _prompts(a), cache=False, **kw)
    assert cached.extra["cache"] and not plain.extra["cache"]
    assert cached.tokens == plain.tokens
    assert cached.extra["tokens_fed"] < plain.extra["tokens_fed"]


def test_dream_never_emits_padded_vocabulary(adapters):
    from accel.decoding.dllm import generate_threshold
    a = adapters["dream"]
    assert a.n_tokens == 151667 < a.model.config.vocab_size
    x = torch.tensor([_prompts(a)[0] + [a.mask_id] * 4])
    with torch.no_grad():
        logits, _ = a.dllm_logits(x, None)
    assert torch.isneginf(logits[..., a.n_tokens:]).all() and torch.isfinite(logits[..., :a.n_tokens]).any()
    res = generate_threshold(a, _prompts(a), gen_len=16, block_len=8, threshold=0.5)
    assert all(t < a.n_tokens for row in res.tokens for t in row)
    assert all(isinstance(a.tokenizer.decode(row), str) for row in res.tokens)


# ------------------------------------------------------------------ shipped YAMLs
@pytest.mark.parametrize("path", ["d2f/llada-8b.yaml", "d2f/dream-7b.yaml", "dparallel/llada-8b.yaml",
                                  "dparallel/dream-7b.yaml", "sft/llada-8b-lora.yaml"])
def test_shipped_yamls_name_modules_that_exist(adapters, path):
    import importlib
    cfg = yaml.safe_load((CONFIGS / path).read_text())
    family = "llada" if "llada" in path else "dream"
    targets = cfg.get("lora_target_modules")
    if targets is None:
        recipe = {"d2f": "d2f", "dparallel": "dparallel", "sft": "sft"}[path.split("/")[0]]
        targets = importlib.import_module(f"accel.recipes.{recipe}.config").Config().lora_target_modules
    names = {n.rsplit(".", 1)[-1] for n, _ in adapters[family].model.named_modules()}
    assert cfg.get("trust_remote_code") is True
    assert set(targets) <= names, sorted(set(targets) - names)


@pytest.mark.parametrize("recipe", ["d2f", "dparallel", "sft"])
def test_default_lora_targets_fit_llada(published_dllm, recipe):
    """Each recipe's Llama-named default becomes LLaDA's names; the output head (also `ff_out`) stays out."""
    import importlib

    from accel.trainers.lora import apply_lora
    a = load_backbone(published_dllm["llada"], trust_remote_code=True, check=False)
    targets = importlib.import_module(f"accel.recipes.{recipe}.config").Config().lora_target_modules
    m = apply_lora(a.model, 2, 4, 0.0, targets)
    adapted = {n.rsplit(".", 2)[-2] for n, _ in m.named_modules() if n.endswith(".lora_A")}
    assert {"q_proj", "attn_out"} <= adapted and adapted <= {"q_proj", "k_proj", "v_proj", "attn_out", "ff_proj",
                                                              "up_proj", "ff_out"}
    assert not any(n.endswith("transformer.ff_out.lora_A") for n, _ in m.named_modules())


# ------------------------------------------------------------------ every command
@pytest.mark.parametrize("family", FAMILIES)
def test_bench_and_decode(published_dllm, family):
    d = published_dllm[family]
    common = ["--trust-remote-code", "--limit", "1", "--task", "arith", "--gen-len", "16", "--block-len", "8"]
    methods = ["vanilla", "fast-dllm", "entropy-threshold", "fast-dllm-prefix", "fast-dllm-dual"]
    listed = _ok(runner.invoke(app, ["bench", d, "--trust-remote-code", "--list-methods"])).stdout
    assert "fast-dllm-prefix" in listed and "fast-dllm-dual" in listed
    out = _ok(runner.invoke(app, ["bench", d, *sum((["-m", m] for m in methods), []), *common]))
    for m in methods:
        assert m in out.stdout
    for m in ("fast-dllm", "fast-dllm-dual"):
        _ok(runner.invoke(app, ["decode", d, "--trust-remote-code", "-p", "calc 1+2", "--gen-len", "16",
                                "--block-len", "8", "-m", m]))


def _train(args):
    return runner.invoke(app, args)


@pytest.mark.parametrize("family", FAMILIES)
def test_training_commands(published_dllm, family, tmp_path):
    """learn2pd, dParallel (with its shipped YAML), D2F (shipped YAML; export; bench the export),
    joint sampler: a couple of steps each."""
    d = published_dllm[family]
    yml = {"llada": "llada-8b.yaml", "dream": "dream-7b.yaml"}[family]
    big = ["trajectories=", "deepspeed=", "bf16=false", "gradient_accumulation_steps=1", "per_device_train_batch_size=2",
           "lora_r=2", "lora_alpha=4", "filter_correct=false"]
    _ok(_train(["train", "learn2pd", "--trust-remote-code", f"backbone={d}", "prompts=suite", "tasks=arith",
                "n_per_task=2", "gen_len=16", "block_len=8", "oracle_batch_size=2", "max_steps=2", "save_steps=2",
                "calibrate_tau=false", "device=cpu", f"output_dir={tmp_path / 'l2p'}"]))
    for recipe, extra in (("dparallel", ["canvas_lens=[]"]), ("d2f", ["eval_n=0"])):
        run, ck = tmp_path / recipe, tmp_path / f"{recipe}-ck"
        _ok(_train(["distill", recipe, "--config", str(CONFIGS / recipe / yml), "--trust-remote-code",
                    f"backbone={d}", *big, *extra, *[s for s in SMALL if s != "device=cpu"], f"output_dir={run}"]))
        _ok(runner.invoke(app, ["export", str(run), "--out", str(ck)]))
        assert json.loads((ck / "config.json").read_text())["auto_map"]  # the shipped code travels with it
        methods = ["dparallel", "dparallel-dual"] if recipe == "dparallel" else ["d2f"]
        out = _ok(runner.invoke(app, ["bench", str(ck), "--trust-remote-code", *sum((["-m", m] for m in methods), []),
                                      "--limit", "1", "--task", "arith", "--gen-len", "16"]))
        assert all(m in out.stdout for m in methods)
    _ok(_train(["train", "joint-sampler", "--trust-remote-code", f"backbone={d}", *SMALL,
                "dependent_tasks=[shuffle]", "n_per_dependent_task=2", "max_k=2", "states_per_prompt=2",
                "plain_states_per_prompt=1", "eval_n=0", "per_device_train_batch_size=2",
                f"output_dir={tmp_path / 'js'}"]))


def test_every_command_without_the_flag_names_it(published_dllm, tmp_path):
    d = published_dllm["llada"]
    for args in (["bench", d, "--limit", "1"], ["decode", d, "-p", "hi"],
                 ["train", "learn2pd", f"backbone={d}", f"output_dir={tmp_path / 'a'}"],
                 ["distill", "dparallel", f"backbone={d}", f"output_dir={tmp_path / 'b'}"],
                 ["distill", "d2f", f"backbone={d}", f"output_dir={tmp_path / 'c'}"],
                 ["train", "joint-sampler", f"backbone={d}", f"output_dir={tmp_path / 'd'}"]):
        _one_line(runner.invoke(app, args), "--trust-remote-code")


def test_d2f_refuses_a_model_that_ignores_its_mask(published_dllm, tmp_path):
    _one_line(runner.invoke(app, ["distill", "d2f", "--trust-remote-code", f"backbone={published_dllm['llada-nobias']}",
                                  "lora_target_modules=[q_proj,k_proj,v_proj,attn_out]",
                                  f"output_dir={tmp_path / 'r'}"]), "ignores the attention mask", "D2F")


def test_a_load_that_disagrees_with_an_earlier_one_is_refused(published_dllm, adapters):
    """The cross-load fingerprint: what catches state a loader leaves uninitialised (Dream's RoPE
    buffers before `reset_rope_parameters`), simulated by altering the stored probe."""
    from accel.models.selfcheck import fingerprint_path
    path = fingerprint_path(adapters["dream"])
    assert path.exists(), "the first load stores a fingerprint"
    saved = path.read_text()
    probe = json.loads(saved)
    probe["logits"][0][0] += 50.0
    path.write_text(json.dumps(probe))
    try:
        with pytest.raises(BackboneError, match="differ from an earlier load"):
            load_backbone(published_dllm["dream"], trust_remote_code=True)
    finally:
        path.write_text(saved)


def test_cached_partials_are_recognised():
    import functools

    from accel.decoding.dllm import generate_threshold
    from accel.decoding.methods import uses_cache
    assert uses_cache(functools.partial(generate_threshold, cache="dual"))  # recipes' partials are recognised
    assert not uses_cache(functools.partial(generate_threshold, cache=None))


# ------------------------------------------------------------------ LLaDA's cached forward
def _padded(a, n=3, L=14):
    """A left-padded batch of ordinary ids with masks in the second half: (ids, valid, pos)."""
    from accel.models.masks import position_ids
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 5000, (n, L), generator=g)
    ids[:, L // 2:] = a.mask_id
    valid = torch.ones(n, L, dtype=torch.bool)
    for i in range(n):
        valid[i, :2 * i] = False
    ids[~valid] = a.pad_id
    return ids, valid, position_ids(valid)


@pytest.fixture(scope="module")
def llada_gqa(published_dllm, tmp_path_factory):
    """The tiny LLaDA with grouped KV heads (2 of 4): its k/v projections cut to 2 heads."""
    import shutil

    from safetensors.torch import load_file, save_file
    d = tmp_path_factory.mktemp("llada-gqa") / "m"
    shutil.copytree(published_dllm["llada"], d)
    d.chmod(0o755)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_kv_heads"] = 2
    (d / "config.json").chmod(0o644)
    (d / "config.json").write_text(json.dumps(cfg))
    sd = load_file(str(d / "model.safetensors"))
    rows = cfg["d_model"] // cfg["n_heads"] * 2
    sd = {k: (v[:rows].contiguous() if k.endswith(("k_proj.weight", "v_proj.weight")) else v) for k, v in sd.items()}
    (d / "model.safetensors").chmod(0o644)
    save_file(sd, str(d / "model.safetensors"))
    return load_backbone(str(d), trust_remote_code=True)


@pytest.mark.parametrize("which", ["llada", "gqa"])
def test_llada_forward_equals_published_on_a_padded_batch(adapters, llada_gqa, which):
    from accel.models.families import llada_forward
    from accel.models.masks import full_mask
    a = adapters["llada"] if which == "llada" else llada_gqa
    assert a.supports_cache
    ids, valid, pos = _padded(a)
    with torch.no_grad():
        published = a.model(input_ids=ids, attention_bias=full_mask(valid), use_cache=False).logits
        ours, _ = llada_forward.forward(a.model, ids, full_mask(valid), pos)
    assert float((published - ours)[valid].abs().max()) <= 1e-4  # padding positions' logits are never read


def _groups_mask(groups, valid, q=None):
    """[B, 1, Lq, Lk]: key j visible to query i when groups[j] <= groups[i], and j is a real token."""
    g = torch.tensor(groups)
    m = (g[None, :] <= g[:, None])[None, None] & valid[:, None, None, :]
    return m if q is None else m[:, :, q]


@pytest.mark.parametrize("mode", ["prefix", "dual", "block-causal"])
def test_llada_cached_block_equals_uncached_under_the_equivalent_mask(adapters, mode):
    """A block fed against the cache gives the logits of one uncached (published) forward whose mask
    shows each cached position what it saw when cached."""
    from accel.models.masks import block_causal_mask
    a = adapters["llada"]
    ids, valid, pos = _padded(a)
    B, L = ids.shape
    s, e = 7, 11  # the block
    fwd = a.family_spec.forward
    with torch.no_grad():
        if mode == "block-causal":  # D2F: prompt [0, 7), blocks of 4; cache the prompt, feed both blocks
            full = block_causal_mask(valid, s, 4)
            want = fwd(a.model, ids, full, pos).logits[:, s:]
            pre = fwd(a.model, ids[:, :s], full[:, :, :s, :s], pos[:, :s], use_cache=True).past_key_values
            got = fwd(a.model, ids[:, s:], full[:, :, s:], pos[:, s:], past_key_values=pre, use_cache=True).logits
        else:
            kept = list(range(s)) + (list(range(e, L)) if mode == "dual" else [])
            fed = [j for j in range(L) if j not in kept]
            groups = [0 if j in kept else 1 for j in range(L)]  # cached positions see only cached ones
            want = fwd(a.model, ids, _groups_mask(groups, valid), pos).logits[:, fed]
            kv = fwd(a.model, ids[:, kept], _groups_mask([0] * len(kept), valid[:, kept]), pos[:, kept],
                     use_cache=True).past_key_values
            key_valid = torch.cat([valid[:, kept], valid[:, fed]], 1)
            mask = key_valid[:, None, None, :].expand(B, 1, len(fed), len(key_valid[0]))
            got = fwd(a.model, ids[:, fed], mask, pos[:, fed], past_key_values=kv, use_cache=True).logits
    rows = valid[:, s:] if mode == "block-causal" else valid[:, fed]
    assert float((want - got)[rows].abs().max()) <= 1e-4


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_llada_cached_forward_in_half_precision(published_dllm, dtype):
    from accel.decoding.dllm import generate_threshold
    a = load_backbone(published_dllm["llada"], trust_remote_code=True, dtype=dtype)
    assert a.supports_cache  # the self-check's cached probe matched at half-precision tolerance
    for cache in ("prefix", "dual"):
        res = generate_threshold(a, _prompts(a), gen_len=16, block_len=8, threshold=0.5, cache=cache)
        assert all(len(t) >= 1 for t in res.tokens)


def test_llada_cached_decoders_batch_like_one_prompt(adapters):
    from accel.decoding.dllm import generate_threshold
    from accel.recipes.d2f.decode import generate_d2f
    a = adapters["llada"]
    tok = a.tokenizer
    ps = _prompts(a) + [tok.encode("calc 7+8 now"), tok.encode("sort 3 1 2")]
    for cache in ("prefix", "dual"):
        four = generate_threshold(a, ps, gen_len=16, block_len=8, threshold=0.5, cache=cache).tokens
        assert four == [generate_threshold(a, [p], gen_len=16, block_len=8, threshold=0.5, cache=cache).tokens[0]
                        for p in ps], cache
    kw = dict(gen_len=16, block_len=4, tau_add=0.1, tau_act=0.5, tau_conf=0.3)
    cached = generate_d2f(a, ps, cache=True, **kw)
    plain = generate_d2f(a, ps, cache=False, **kw)
    assert cached.extra["cache"] and cached.tokens == plain.tokens
    assert cached.extra["tokens_fed"] < plain.extra["tokens_fed"]
    assert cached.tokens == [generate_d2f(a, [p], cache=True, **kw).tokens[0] for p in ps]


def test_llada_config_the_cached_forward_does_not_compute_falls_back(published_dllm, tmp_path, capfd, monkeypatch):
    """An option no LLaDA release ships (here a plain LayerNorm): one line at load, no cache, the published
    forward decodes; a cached decoder is then one clear error."""
    import shutil
    d = tmp_path / "ln"
    shutil.copytree(published_dllm["llada"], d)
    d.chmod(0o755)
    cfg = json.loads((d / "config.json").read_text())
    cfg["layer_norm_type"] = "default"
    (d / "config.json").chmod(0o644)
    (d / "config.json").write_text(json.dumps(cfg))
    monkeypatch.setenv("ACCEL_CACHE_DIR", str(tmp_path / "cache"))  # same weights, other logits: no fingerprint
    a = load_backbone(str(d), trust_remote_code=True)
    err = [ln for ln in capfd.readouterr().err.splitlines() if "KV cache" in ln]
    assert len(err) == 1 and "layer_norm_type='default'" in err[0], err
    assert not a.supports_cache
    from accel.decoding.dllm import generate_threshold
    with pytest.raises(BackboneError, match="no KV cache"):
        generate_threshold(a, _prompts(a), gen_len=16, block_len=8, cache="prefix")
    assert len(generate_threshold(a, _prompts(a), gen_len=8, block_len=8).tokens) == 2


@pytest.fixture(scope="module")
def llada_by_dtype(published_dllm, adapters):
    return {"fp32": adapters["llada"], **{d: load_backbone(published_dllm["llada"], trust_remote_code=True, dtype=d)
                                          for d in ("bf16", "fp16")}}


def _cached_logits(a, ids, valid, pos, mode, s, e):
    """The logits of block [s, e) fed against the cache `mode` builds (prefix, dual or D2F's block-causal
    with blocks of 4 after a prompt of s), and the validity of the fed positions."""
    from accel.models.masks import block_causal_mask, full_mask
    fwd = a.family_spec.forward
    B, L = ids.shape
    if mode == "block-causal":
        full = block_causal_mask(valid, s, 4)
        pre = fwd(a.model, ids[:, :s], full[:, :, :s, :s], pos[:, :s], use_cache=True).past_key_values
        return fwd(a.model, ids[:, s:], full[:, :, s:], pos[:, s:], past_key_values=pre, use_cache=True).logits, \
            valid[:, s:]
    kept = list(range(s)) + (list(range(e, L)) if mode == "dual" else [])
    fed = [j for j in range(L) if j not in kept]
    kv = fwd(a.model, ids[:, kept], full_mask(valid[:, kept]), pos[:, kept], use_cache=True).past_key_values
    key_valid = torch.cat([valid[:, kept], valid[:, fed]], 1)
    mask = key_valid[:, None, None, :].expand(B, 1, len(fed), key_valid.shape[1])
    return fwd(a.model, ids[:, fed], mask, pos[:, fed], past_key_values=kv, use_cache=True).logits, valid[:, fed]


@pytest.mark.parametrize("mode", ["prefix", "dual", "block-causal"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_llada_cached_paths_keep_each_rows_padding_to_itself(llada_by_dtype, dtype, mode):
    """Left-padded batch, every cache, every dtype: other token ids at the padded positions leave every real
    position's logits bit-identical, and each row's logits are its logits alone (no padding) up to rounding."""
    a = llada_by_dtype[dtype]
    ids, valid, pos = _padded(a)
    other = ids.clone()
    other[~valid] = torch.arange(100, 100 + int((~valid).sum()))
    s, e = 7, 11
    with torch.no_grad():
        got, fed_valid = _cached_logits(a, ids, valid, pos, mode, s, e)
        assert got.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        again, _ = _cached_logits(a, other, valid, pos, mode, s, e)
        assert torch.equal(got[fed_valid], again[fed_valid])
        tol = {"fp32": 1e-4, "bf16": 0.5, "fp16": 0.1}[dtype]  # 30-sized logits: 2 ulps of bf16, 3 of fp16
        for i in range(1, ids.shape[0]):  # row i has 2i padding positions
            p = 2 * i
            alone, alone_valid = _cached_logits(a, ids[i:i + 1, p:], valid[i:i + 1, p:], pos[i:i + 1, p:], mode,
                                                s - p, e - p)
            assert alone_valid.all()
            diff = (got[i][fed_valid[i]].float() - alone[0].float()).abs().max()
            assert float(diff) <= tol, (i, float(diff))


def test_llada_reference_and_oracle_with_the_dual_cache(adapters):
    """Learn2PD's data on LLaDA through the family's cache: the one-token-per-step reference (batch 4 =
    batch 1), and the oracle, which only ever writes reference tokens and labels what matches it."""
    from accel.recipes.learn2pd import oracle
    a = adapters["llada"]
    tok = a.tokenizer
    ps = _prompts(a) + [tok.encode("calc 7+8 now"), tok.encode("sort 3 1 2")]
    ref, res = oracle.reference_canvas(a, ps, 16, 8, cache="dual")
    assert res.tokens == [oracle.reference_canvas(a, [p], 16, 8, cache="dual")[1].tokens[0] for p in ps]
    assert all(n == 16 or len(t) < 16 for n, t in zip(res.nfe, res.tokens))  # one token per forward
    steps = []
    out = oracle.oracle_decode(a, ps, 16, 8, reference=ref, record=lambda *r: steps.append(r), cache="dual")
    assert out.tokens == res.tokens
    assert sum(len(r[0]) for r in steps) == sum(out.nfe) and all(2 <= n <= 16 for n in out.nfe)
    for rows, block, step, conf, label, masked in steps:
        assert conf.shape == (len(rows), 8) and ((conf > 0) & (conf <= 1)).all() and label[~masked].all()


def test_learn2pd_decodes_with_the_cache_where_the_family_has_one(published_dllm, adapters, llada_gqa, tmp_path):
    from accel.recipes.learn2pd.config import SIZES, Config
    from accel.recipes.learn2pd.oracle import resolve_cache
    from accel.recipes.learn2pd.train import published
    from accel.trainers.config import ConfigError
    ll = adapters["llada"]
    assert resolve_cache(ll) == "dual" and resolve_cache(adapters["dream"]) == "dual"
    assert resolve_cache(ll, "none") is None and resolve_cache(ll, "prefix") == "prefix"
    builtin = load_backbone("builtin:dllm")
    assert resolve_cache(builtin) is None and resolve_cache(builtin, "dual") == "dual"
    with pytest.raises(ConfigError, match="choose one of"):
        resolve_cache(ll, "yes")
    # the size keys left unset follow the backbone; a value given stays
    assert published(published_dllm["llada"]) and published(published_dllm["dream"])
    assert not published("builtin:dllm") and not published(str(tmp_path / "missing"))
    c = Config(calib_per_task=5).sized(True)
    assert (c.n_per_task, c.calib_per_task, c.oracle_batch_size) == (SIZES["published"]["n_per_task"], 5,
                                                                      SIZES["published"]["oracle_batch_size"])
    assert Config().sized(False).n_per_task == 40 and Config().sized(False).calib_batch_size == 32


def test_learn2pd_calibrates_on_llada_with_its_cache_and_says_what_it_costs(published_dllm, tmp_path):
    """τ calibration on on the 126K vocabulary: the cost of both decode phases stated first, a progress bar,
    the dual cache recorded with the oracle data, the table it chose from."""
    out = tmp_path / "l2p"
    r = _ok(_train(["train", "learn2pd", "--trust-remote-code", f"backbone={published_dllm['llada']}",
                    "tasks=arith,copy", "n_per_task=2", "calib_per_task=1", "gen_len=16", "block_len=8",
                    "max_steps=5", "save_steps=5", "device=cpu", f"output_dir={out}"]))
    assert "oracle data: 4 prompts x 2 decodes" in r.output and "n_per_task shrinks it" in r.output
    assert "tau calibration: 2 held-out prompts x (the reference + 10 thresholds) = 22 decodes" in r.output
    assert "dual KV cache" in r.output and "calib_per_task shrinks it" in r.output
    assert "τ calibration" in r.output  # the bar
    assert json.loads((out / "oracle" / "oracle_meta.json").read_text())["cache"] == "dual"
    metrics = json.loads((out / "filter_metrics.json").read_text())
    table = metrics["tau_calibration"]
    assert table[-1]["tau"] == 1.0 and metrics["tau"] in [r["tau"] for r in table[:-1]]
    assert f"tau {metrics['tau']:<7}" in next(ln for ln in r.output.splitlines() if "<- chosen" in ln)


def test_token_statistics_on_a_published_vocabulary_are_chunk_invariant():
    """The CPU statistics every decoder runs per step take a 126K vocabulary a few rows at a time: the same
    bits as over the whole tensor at once, dead (all -inf) rows included."""
    from accel.decoding import kernels
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 9, 126464, generator=g) * 6
    x[0, 3] = -float("inf")
    x[1, 2, :1000] = -float("inf")
    assert x[0].numel() > kernels.REF_CHUNK  # more than one chunk
    got = kernels.argmax_prob_entropy_ref(x)
    whole = kernels._stats(x.reshape(-1, x.shape[-1]))
    for a, b in zip(got, whole):
        assert a.shape == (2, 9) and torch.equal(a.reshape(-1), b)
    assert got[1][0, 3] == 0 and got[2][0, 3] == float("inf")
    assert torch.equal(got[0], x.argmax(-1).masked_fill(torch.isneginf(x).all(-1), 0))
