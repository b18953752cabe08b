"""`accel distill d2f` end to end on a tiny random dLLM: train, export (merged + adapter), bench rows."""
import json
from pathlib import Path

import pytest
import torch

SMOKE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "d2f" / "smoke.yaml"


@pytest.fixture(scope="module")
def tiny_teacher(tiny_dir):
    """A saved random-init tiny dLLM dir (loadable by load_backbone, so adapter export can reference it)."""
    from pathlib import Path
    return Path(tiny_dir("dllm"))


def test_config_errors():
    from accel.recipes.d2f.config import Config
    from accel.trainers.config import ConfigError
    from accel.trainers.loading import load_config
    with pytest.raises(ConfigError, match="lora_r"):
        load_config(Config, None, ["lora_r=0"])
    with pytest.raises(ConfigError, match="gen_len"):
        load_config(Config, None, ["gen_len=44"])  # not a multiple of block_len (8)
    with pytest.raises(ConfigError, match="tau_act"):
        load_config(Config, None, ["tau_act=1.5"])
    for y in sorted(SMOKE.parent.glob("*.yaml")):  # every shipped YAML loads
        load_config(Config, y, recipe="d2f")


def test_tiny_distill_end_to_end(tiny_teacher, tmp_path, check_adapter_export):
    from transformers import AutoModelForCausalLM

    from accel.data.tasks import test_split
    from accel.data.tokenizer import chat_prompt_ids
    from accel.decoding.checkpoint import CheckpointError, load_checkpoint
    from accel.models.backbone import load_backbone
    from accel.recipes.d2f.config import Config
    from accel.recipes.d2f.export import export
    from accel.recipes.d2f.inference import DEFAULT_METHODS, bench_methods
    from accel.recipes.d2f.train import run
    from accel.trainers.loading import load_config

    cfg = load_config(Config, SMOKE, [f"backbone={tiny_teacher}", f"output_dir={tmp_path / 'run'}", "n_per_task=1",
                                      "max_steps=3"], recipe="d2f")
    run_dir = run(cfg)
    assert (run_dir / "final" / "config.json").exists() and (run_dir / "final" / "adapter").is_dir()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"ce", "kl", "agree", "masked_frac"} <= set(next(r for r in rows if "ce" in r))

    merged = export(run_dir, tmp_path / "ckpt", tau_conf=0.8)
    hf = AutoModelForCausalLM.from_pretrained(str(merged))
    ck = load_checkpoint(merged)
    assert ck.recipe == "d2f" and ck.decode["block_len"] == 16 and ck.decode["tau_conf"] == 0.8
    assert ck.decode["tau_add"] == 0.1 and ck.decode["tau_act"] == 0.95
    assert ck.config["accel_dllm"]["attention"] == "block-causal"
    adapter = load_backbone(ck.backbone_target())
    methods = bench_methods(ck, adapter)
    assert DEFAULT_METHODS == ["vanilla", "fast-dllm", "d2f"] and set(DEFAULT_METHODS) <= set(methods)
    prompts = [chat_prompt_ids(adapter.tokenizer, e["prompt"]) for e in test_split("copy", 2)]
    res = methods["d2f"](adapter, prompts, 32)
    assert len(res.tokens) == 2 and all(1 <= n <= 32 for n in res.nfe)
    assert methods["d2f-nocache"](adapter, prompts, 32).tokens == res.tokens
    assert methods["vanilla"](adapter, prompts, 32).nfe == [32, 32]
    assert methods["vanilla"].model is not methods["d2f"].model  # baselines run on the teacher

    check_adapter_export(export, bench_methods, run_dir, tmp_path / "ckpt-adapter", tiny_teacher, hf, prompts[0],
                         "d2f")

    with pytest.raises(CheckpointError, match="--format"):
        export(run_dir, tmp_path / "x", format="vllm")
    with pytest.raises(CheckpointError, match="no option"):
        export(run_dir, tmp_path / "x", threshold=0.5)
    with pytest.raises(CheckpointError, match="no finished model"):
        export(tmp_path, tmp_path / "y")
