"""Cached base states, draft vocabularies and real-prompt benches on a tiny random AR model.

The draft vocabulary must never change what is decoded: tree decoding with truncated heads is
checked token for token against greedy decoding, for Medusa and Hydra.
"""
import json

import pytest
import torch

from accel.decoding.ar import generate_greedy
from accel.data.prompts import encode_prompt

torch.set_num_threads(1)
PROMPTS = ["copy 12", "copy 3", "sort 21", "copy 9", "reverse 42", "sort 7 3", "copy 55", "insert 1 2"]


@pytest.fixture(scope="module")
def tiny():
    from accel.recipes.medusa.config import Config
    from accel.recipes.sft.train import load_model
    return load_model(Config(backbone="random:ar"))


@pytest.fixture(scope="module")
def states(tiny, tmp_path_factory):
    from accel.recipes.shared.self_distill import self_distill
    d = tmp_path_factory.mktemp("sd")
    self_distill(tiny, PROMPTS[:5], d / "sd.jsonl", batch_size=3, max_new_tokens=12, states_dir=d / "states")
    # resumed with another batch size: the shard past the last line is rewritten, nothing is lost
    self_distill(tiny, PROMPTS, d / "sd.jsonl", batch_size=2, max_new_tokens=12, states_dir=d / "states")
    return d


def test_states_are_the_base_states_of_the_self_distilled_tokens(tiny, states):
    from accel.recipes.shared.state_cache import StateCache
    recs = [json.loads(x) for x in (states / "sd.jsonl").read_text().splitlines()]
    cache = StateCache(states / "states", expect_n=len(PROMPTS), adapter=tiny)
    assert len(cache) == len(PROMPTS) == len(recs)
    body, lm_head = tiny.model.model, tiny.model.lm_head
    for s, r in zip(cache.seqs, recs):
        p = encode_prompt(tiny.tokenizer, r["prompt"])
        assert s.ids[:s.prompt_len] == p and [t for t in s.ids[s.prompt_len:] if t not in tiny.eos_ids] == r["response_ids"]
        h = cache.h[s.row:s.row + len(s.ids) - 1].float()
        with torch.no_grad():
            full = body(input_ids=torch.tensor([s.ids])).last_hidden_state[0, :-1]
            # the cached states reproduce the greedy tokens and a plain full forward (float16 storage)
            assert lm_head(h).argmax(-1)[s.prompt_len - 1:].tolist() == s.ids[s.prompt_len:]
        torch.testing.assert_close(h, full, atol=2e-2, rtol=2e-2)


def test_compute_states_resumes_and_matches(tiny, states, tmp_path):
    from accel.recipes.shared.state_cache import StateCache, compute_states
    src = StateCache(states / "states")
    seqs, plens = [s.ids for s in src.seqs], [s.prompt_len for s in src.seqs]
    compute_states(tiny, seqs[:3], plens[:3], tmp_path / "st", batch_size=2)
    compute_states(tiny, seqs, plens, tmp_path / "st", batch_size=2)
    got = StateCache(tmp_path / "st", expect_n=len(seqs))
    assert [s.ids for s in got.seqs] == seqs
    torch.testing.assert_close(got.h.float(), src.h.float(), atol=2e-2, rtol=2e-2)


def _medusa_run(tmp_path, states, **kw):
    from accel.recipes.medusa.config import Config
    from accel.recipes.medusa.train import run
    cfg = Config(output_dir=str(tmp_path / "m"), backbone="random:ar", states=str(states / "states"),
                 mode="medusa1", loss="ce", num_heads=3, num_layers=1, max_steps=6, save_steps=6,
                 per_device_train_batch_size=16, learning_rate=1e-2, tree_nodes=0, **kw)
    cfg.validate()
    return run(cfg)


def test_medusa_draft_vocab_decodes_exactly_greedy(tiny, states, tmp_path):
    from accel.decoding.checkpoint import load_checkpoint
    from accel.models.backbone import load_backbone
    from accel.recipes.medusa import export as ex
    from accel.recipes.medusa.inference import bench_methods
    run_dir = _medusa_run(tmp_path, states, draft_vocab_size=6)
    meta = json.loads((run_dir / "final" / "medusa.json").read_text())
    assert meta["draft_vocab_size"] == 6 and meta["tree_nodes"] == 0 and 0 < meta["draft_vocab_coverage"] <= 1
    # accuracies count out-of-vocabulary targets as misses: never above the coverage of the first head's targets
    assert sum(meta["head_accuracy"][0]) <= meta["draft_vocab_coverage"] + 1e-9
    ckpt = load_checkpoint(ex.export(run_dir, tmp_path / "ck"))
    adapter = load_backbone(ckpt.backbone_target())
    methods = bench_methods(ckpt, adapter)  # tree_nodes 0: sized on this device
    prompts = [encode_prompt(adapter.tokenizer, p) for p in PROMPTS[:3]]
    ref = generate_greedy(adapter, prompts, 12).tokens
    assert methods["medusa"](adapter, prompts, 12).tokens == ref
    vl = ex.export(run_dir, tmp_path / "vllm", format="vllm")
    cfg = json.loads((vl / "config.json").read_text())
    # vLLM 0.32 builds per-head projections over the full vocabulary: the draft rows widened to it
    # (tests/test_engines.py checks the layout against its loader)
    assert cfg["truncated_vocab_size"] == cfg["vocab_size"] > 6 and "token_map" not in cfg
    from accel.cli.common import UserError
    with pytest.raises(UserError, match="token map"):
        ex.export(run_dir, tmp_path / "ref", format="medusa")


def test_medusa_drafter_maps_draft_ids_to_full_ids():
    from accel.decoding.tree import TreeSpec
    from accel.recipes.medusa.heads import MedusaDrafter, MedusaHeads
    tm = torch.tensor([40, 7, 23, 2])
    heads = MedusaHeads(8, 50, num_heads=2, num_layers=1, lm_head_weight=torch.randn(50, 8), token_map=tm)
    assert heads.lm_heads[0].weight.shape == (4, 8) and heads.config()["draft_vocab_size"] == 4
    torch.testing.assert_close(heads.lm_heads[0].weight, heads.lm_heads[1].weight)
    cand = MedusaDrafter(heads).draft(torch.randn(1, 8), torch.tensor([5]), TreeSpec([(0,), (1,), (0, 0)]))
    assert cand[0, 0] == 5 and set(cand[0, 1:].tolist()) <= set(tm.tolist())
    again = MedusaHeads.from_state_dict(heads.config(), heads.state_dict())
    assert again.token_map.tolist() == tm.tolist()
    # the gate's level-by-level chain (accel.decoding.gate) drafts the chain `draft` drafts, mapped the same way
    with torch.no_grad():
        for p in heads.parameters():
            p.add_(0.3 * torch.randn_like(p))
    h = torch.randn(1, 8)
    chain = MedusaDrafter(heads).draft(h, torch.tensor([5]), TreeSpec.chain(2))[0, 1:].tolist()
    levels = list(MedusaDrafter(heads).chain_levels(h, torch.tensor([5]), 2))
    assert [int(t[0]) for t, _ in levels] == chain and all(0 < float(p[0]) <= 1 for _, p in levels)


def test_hydra_cached_draft_vocab_decodes_exactly_greedy(tiny, states, tmp_path):
    from accel.decoding.checkpoint import load_checkpoint
    from accel.models.backbone import load_backbone
    from accel.recipes.hydra import export as ex
    from accel.recipes.hydra.config import Config
    from accel.recipes.hydra.inference import bench_methods
    from accel.recipes.hydra.train import run
    cfg = Config(output_dir=str(tmp_path / "h"), backbone="random:ar", states=str(states / "states"),
                 num_heads=2, num_layers=1, max_steps=4, save_steps=4, per_device_train_batch_size=2,
                 eval_seqs=2, draft_vocab_size=6, tree_nodes=4)
    cfg.validate()
    run_dir = run(cfg)
    meta = json.loads((run_dir / "final" / "hydra.json").read_text())
    assert meta["draft_vocab_size"] == 6 and meta["loss"] == "ce" and len(meta["stats"]["topk_accuracy"]) == 2
    ckpt = load_checkpoint(ex.export(run_dir, tmp_path / "ck"))
    adapter = load_backbone(ckpt.backbone_target())
    prompts = [encode_prompt(adapter.tokenizer, p) for p in PROMPTS[:3]]
    got = bench_methods(ckpt, adapter)["hydra"](adapter, prompts, 12).tokens
    assert got == generate_greedy(adapter, prompts, 12).tokens


def test_bench_prompt_file_scores_identity_to_greedy(tmp_path):
    from accel.decoding.bench import run_bench
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "copy 12", "category": "a"}\n{"prompt": "sort 3 1", "category": "b"}\n'
                 '{"prompt": "copy 4", "category": "a"}\n')
    from accel.recipes.targets import load_target
    target = load_target("builtin:ar")

    def off_by_one(adapter, prompts, gen_len):  # greedy, except the first prompt's first token
        res = generate_greedy(adapter, prompts, gen_len)
        res.tokens[0] = [res.tokens[0][0] + 1] + res.tokens[0][1:]
        return res
    from accel.decoding.methods import DecodeMethod
    target.recipe_methods = {"off-by-one": DecodeMethod("off-by-one", "ar", "greedy, first token changed", off_by_one)}
    rep = run_bench(target, ["greedy", "off-by-one"], prompts=str(f), gen_len=8, batch_size=1)
    rows = {(r["method"], r["task"]): r for r in rep["rows"]}
    assert rep["tasks"] == ["a", "b"] and rep["quality"] == "identical_to_greedy"
    assert rows[("greedy", "all")]["identical_to_greedy"] == 1.0 and rows[("greedy", "a")]["n"] == 2
    assert rows[("off-by-one", "all")]["identical_to_greedy"] == 0.0  # batch 1: every row is a first row
    # batches are per category: "a" is one batch of 2 (one row differs), "b" one of 1
    rep = run_bench(target, ["greedy", "off-by-one"], prompts=str(f), gen_len=8, batch_size=2)
    assert {r["task"]: r["identical_to_greedy"] for r in rep["rows"] if r["method"] == "off-by-one"} == \
        {"a": 0.5, "b": 0.0, "all": 1 / 3}
    from accel.decoding.errors import BenchError
    with pytest.raises(BenchError, match="AR target"):
        run_bench("builtin:dllm", prompts=str(f), gen_len=8)
