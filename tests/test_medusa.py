"""Medusa recipe: heads, losses, tree building, data, train -> export (3 formats) -> bench, self-distill."""
import json
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch
from safetensors.torch import load_file

from accel.decoding.ar import generate_greedy
from accel.recipes.medusa.config import Config
from accel.recipes.medusa.heads import MedusaHeads
from accel.recipes.medusa.loss import accuracies, heads_loss, rank_counts
from accel.decoding.tree_build import build_tree, chain_accept_length, expected_accept_length

torch.set_num_threads(1)


def test_heads_start_as_base_lm_head_and_layers_are_distinct():
    W = torch.randn(11, 6)
    heads = MedusaHeads(6, 11, num_heads=3, num_layers=2, lm_head_weight=W)
    h = torch.randn(2, 5, 6)
    out = heads(h)
    assert out.shape == (2, 5, 3, 11)
    for k in range(3):
        torch.testing.assert_close(out[..., k, :], h @ W.T)
    ids = {id(p) for p in heads.parameters()}
    assert len(ids) == 3 * 2 * 2 + 3  # every residual layer has its own weight and bias
    assert "blocks.2.1.linear.bias" in heads.state_dict() and "lm_heads.2.weight" in heads.state_dict()


def test_loss_alignment_perfect_heads():
    """Head k predicts labels[t+k+2]: one-hot logits at the shifted labels give top-1 = 1."""
    B, L, K, V = 2, 9, 3, 7
    labels = torch.randint(0, V, (B, L))
    labels[:, :3] = -100
    logits = torch.full((B, L, K, V), -10.0)
    for k in range(K):
        for t in range(L - k - 2):
            y = labels[:, t + k + 2]
            for b in range(B):
                if y[b] >= 0:
                    logits[b, t, k, y[b]] = 10.0
    loss, m = heads_loss(logits, labels, decay=0.8, topk=2)
    assert float(loss) < 1e-3
    assert all(m[f"head{k}_top1"] == 1.0 for k in range(K))
    assert m["est_accept_len"] == pytest.approx(K + 1)
    acc = accuracies(rank_counts(logits, labels, topk=2))
    assert [a[0] for a in acc] == [1.0] * K
    # a shifted-by-one head is wrong: the alignment matters
    loss2, m2 = heads_loss(torch.roll(logits, 1, dims=1), labels, decay=0.8, topk=2)
    assert float(loss2) > 1.0 and m2["head0_top1"] < 1.0


def test_tree_builder_greedy():
    acc = [[0.8, 0.1], [0.5, 0.3], [0.4, 0.1]]
    tree = build_tree(acc, 4)
    # node probabilities: (0,) .8, (0,0) .4, (0,1) .24, (0,0,0) .16 beat (1,) .1
    assert tree.paths == [(0,), (0, 0), (0, 1), (0, 0, 0)]
    assert expected_accept_length(acc, tree) == pytest.approx(1 + 0.8 + 0.4 + 0.24 + 0.16)
    assert chain_accept_length([0.8, 0.5]) == pytest.approx(1 + 0.8 + 0.4)
    big = build_tree(acc, 100)
    assert big.num_nodes == 2 + 4 + 8  # everything reachable with 3 heads x top-2


def test_config_validation():
    from accel.trainers.config import ConfigError
    with pytest.raises(ConfigError, match="lora_r"):
        Config(mode="medusa2", lora_r=0).validate()
    with pytest.raises(ConfigError, match="data"):
        Config(data="x.csv").validate()


def test_sharegpt_loss_only_on_assistant_turns():
    from accel.data.tokenizer import build_tokenizer
    from accel.recipes.medusa.examples import sharegpt_example
    tok = build_tokenizer()
    conv = [{"from": "human", "value": "copy 12"}, {"from": "gpt", "value": "12"},
            {"from": "human", "value": "copy 345"}, {"from": "gpt", "value": "345"}]
    ids, mask = sharegpt_example(tok, conv, "x")
    sup = [t for t, m in zip(ids, mask) if m]
    eos = tok.eos_token_id
    assert tok.convert_ids_to_tokens(sup) == ["1", "2", "<eos>", "3", "4", "5", "<eos>"]
    assert sup.count(eos) == 2 and len(ids) > len(sup)


def _train(tmp_path, **over):
    from accel.trainers.loading import load_config  # noqa: F401 (the CLI path; here a direct Config)
    from accel.recipes.medusa.train import run
    cfg = Config(output_dir=str(tmp_path / "run"), backbone="random:ar", n_per_task=4, eval_n=2, tasks=["copy", "sort"],
                 max_steps=4, save_steps=4, per_device_train_batch_size=4, tree_nodes=6, num_heads=3, **over)
    cfg.validate()
    return run(cfg)


def _minimal_vllm_heads(d):
    """An independent reader of vLLM's Medusa layout (blocks.i.layers.j, lm_heads.i)."""
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model_type"] == "medusa" and cfg["truncated_vocab_size"] == cfg["vocab_size"]
    assert cfg["medusa_fc_bias"] is True
    w = load_file(str(d / "model.safetensors"))
    assert not any(k.startswith("lm_heads") and k.endswith("bias") for k in w)

    def fwd(h):
        outs = []
        for i in range(cfg["num_heads"]):
            x = h
            for j in range(cfg["num_hidden_layers"]):
                x = x + torch.nn.functional.silu(x @ w[f"blocks.{i}.layers.{j}.weight"].T + w[f"blocks.{i}.layers.{j}.bias"])
            outs.append(x @ w[f"lm_heads.{i}.weight"].T)
        return torch.stack(outs, -2)
    return cfg, fwd


def _minimal_medusa_repo_heads(d):
    """An independent reader of the reference repo's layout ({head}.{layer}.linear, {head}.{L})."""
    cfg = json.loads((d / "config.json").read_text())
    w = load_file(str(d / "medusa_lm_head.safetensors"))
    L = cfg["medusa_num_layers"]

    def fwd(h):
        outs = []
        for i in range(cfg["medusa_num_heads"]):
            x = h
            for j in range(L):
                x = x + torch.nn.functional.silu(x @ w[f"{i}.{j}.linear.weight"].T + w[f"{i}.{j}.linear.bias"])
            outs.append(x @ w[f"{i}.{L}.weight"].T)
        return torch.stack(outs, -2)
    return cfg, fwd


def test_train_export_formats_and_bench(tmp_path):
    from accel.decoding.checkpoint import load_checkpoint
    from accel.models.backbone import load_backbone
    from accel.recipes.medusa import export as ex
    from accel.recipes.medusa.inference import DEFAULT_METHODS, bench_methods, load_heads

    run_dir = _train(tmp_path)
    meta = json.loads((run_dir / "final" / "medusa.json").read_text())
    assert meta["num_heads"] == 3 and len(meta["tree"]) == 6 and meta["tree_accept_len"] >= 1.0
    rec = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("head2_top1" in r and "est_accept_len" in r for r in rec)
    assert any("eval_tree_accept_len" in r for r in rec)

    ck = ex.export(run_dir, tmp_path / "ck")
    ckpt = load_checkpoint(ck)
    heads, s, tree = load_heads(ckpt)
    assert tree.to_json() == meta["tree"]
    h = torch.randn(2, heads.hidden_size)
    with torch.no_grad():
        ref = heads(h)
        for fmt, reader in (("vllm", _minimal_vllm_heads), ("medusa", _minimal_medusa_repo_heads)):
            d = ex.export(run_dir, tmp_path / fmt, format=fmt)
            cfg, fwd = reader(d)
            torch.testing.assert_close(fwd(h), ref)
    assert json.loads((tmp_path / "medusa" / "config.json").read_text())["medusa_num_heads"] == 3

    adapter = load_backbone(ckpt.backbone_target())
    methods = bench_methods(ckpt, adapter)
    assert DEFAULT_METHODS == ["greedy", "medusa", "medusa+lookup"] and set(DEFAULT_METHODS) <= set(methods)
    from accel.data.tokenizer import chat_prompt_ids
    prompts = [chat_prompt_ids(adapter.tokenizer, p) for p in ["copy 123", "sort 9 1 5 3", "copy 77"]]
    g = methods["greedy"](adapter, prompts, 16)
    m = methods["medusa"](adapter, prompts, 16)
    assert m.tokens == g.tokens == generate_greedy(adapter, prompts, 16).tokens
    assert m.extra["accepted_per_forward"] >= 1.0


def test_medusa2_lora_lambda_warmup(tmp_path):
    run_dir = _train(tmp_path, mode="medusa2", lora_r=2, lambda_warmup_steps=4, learning_rate=1e-3,
                     lambda_heads=0.2)
    rec = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lams = [r["lambda_heads"] for r in rec if "lambda_heads" in r]
    assert lams == sorted(lams) and lams[0] < lams[-1] <= 0.2 and "lm_loss" in rec[0]
    assert (run_dir / "final" / "base" / "config.json").exists() and (run_dir / "final" / "adapter").exists()


def test_lr_multiplier_groups():
    """fit's lr_multipliers split optimizer groups: heads at head_lr_mult x the LoRA rate."""
    from accel.trainers.trainer import _make_trainer_classes
    AccelTrainer, _, _ = _make_trainer_classes()
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    model = torch.nn.Sequential(a, b)
    from transformers import TrainingArguments
    args = TrainingArguments(output_dir="/tmp/unused-accel-lr", learning_rate=1e-3, use_cpu=True, report_to=[])
    t = AccelTrainer(model=model, args=args, loss_fn=None, accel_cfg=None,
                     lr_multipliers={id(p): 4.0 for p in b.parameters()})
    opt = t.create_optimizer()
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert all(lr_of[id(p)] == pytest.approx(4e-3) for p in b.parameters())
    assert all(lr_of[id(p)] == pytest.approx(1e-3) for p in a.parameters())


def test_jsonl_and_errors(tmp_path):
    from accel.cli.common import UserError
    from accel.data.tokenizer import build_tokenizer
    from accel.recipes.medusa.examples import load_examples
    tok = build_tokenizer()
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": "copy 1", "response": "1", "response_ids": [8]}) for _ in range(3)))
    train, held = load_examples(Config(data=str(f)), tok)
    assert len(train) == 2 and len(held) == 1
    ids, mask = train[0]
    assert [t for t, m in zip(ids, mask) if m] == [8, tok.eos_token_id]
    f.write_text('{"prompt": 3}\n')
    with pytest.raises(UserError, match="d.jsonl:1"):
        load_examples(Config(data=str(f)), tok)
    with pytest.raises(UserError, match="no such file"):
        load_examples(Config(data=str(tmp_path / "nope.jsonl")), tok)


def test_self_distill_resumes(tmp_path):
    from accel.recipes.shared.self_distill import SelfDistillError, self_distill
    from accel.recipes.sft.train import load_model
    a = load_model(Config(backbone="random:ar"))
    out = tmp_path / "sd.jsonl"
    prompts = ["copy 12", "copy 3", "sort 21", "copy 9"]
    assert self_distill(a, prompts[:2], out, batch_size=2, max_new_tokens=6) == 2
    assert self_distill(a, prompts, out, batch_size=3, max_new_tokens=6) == 2  # resumes after line 2
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["prompt"] for r in recs] == prompts
    from accel.data.prompts import encode_prompt
    ref = generate_greedy(a, [encode_prompt(a.tokenizer, p) for p in prompts], 6).tokens
    assert [r["response_ids"] for r in recs] == [[t for t in r if t not in a.eos_ids] for r in ref]
    with pytest.raises(SelfDistillError, match="other prompts"):
        self_distill(a, ["reverse 1"] + prompts, out)
