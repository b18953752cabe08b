"""fit(): metrics.jsonl, rotation, gradient accumulation, atomic saves, resume=auto, LoRA, sft."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import trainer_toy as toy  # noqa: E402

from accel.trainers import checkpoint as ck  # noqa: E402
from accel.trainers.loading import load_config  # noqa: E402
from accel.trainers.trainer import fit  # noqa: E402


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    torch.set_num_threads(1)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)


def _fit(out, *ov):
    cfg = load_config(toy.ToyConfig, None, [f"output_dir={out}", "n_examples=32", *ov])
    return fit(cfg, toy.make_model(), toy.make_loss(cfg), toy.make_data(cfg.n_examples), data_collator=toy.collate)


def test_metrics_one_dict_per_step_and_rotation(tmp_path):
    res = _fit(tmp_path, "max_steps=5", "save_steps=1", "save_total_limit=2", "per_device_train_batch_size=4")
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5]
    assert all("abs_err" in r and "learning_rate" in r for r in steps)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-5"]
    assert res.global_step == 5 and res.final_checkpoint == tmp_path / "checkpoint-5"
    assert (tmp_path / "config.yaml").exists() and not ck.staging_dir(tmp_path).exists()


def test_gradient_accumulation_matches_big_batch(tmp_path):
    a = _fit(tmp_path / "a", "max_steps=3", "per_device_train_batch_size=8", "noise=0")
    b = _fit(tmp_path / "b", "max_steps=3", "per_device_train_batch_size=4", "gradient_accumulation_steps=2", "noise=0")
    wa = load_file(str(a.final_checkpoint / "model.safetensors"))
    wb = load_file(str(b.final_checkpoint / "model.safetensors"))
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5), k


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from transformers import Trainer
    orig, calls = Trainer._save_rng_state, {"n": 0}

    def flaky(self, output_dir):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return orig(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", flaky)
    with pytest.raises(OSError, match="simulated"):
        _fit(tmp_path, "max_steps=6", "save_steps=2", "per_device_train_batch_size=4")
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["checkpoint-2"]
    assert not (tmp_path / "checkpoint-4").exists()  # half-written one stayed in staging
    monkeypatch.setattr(Trainer, "_save_rng_state", orig)
    (tmp_path / "checkpoint-9").mkdir()  # incomplete (no marker): resume=auto must ignore it
    assert ck.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    res = _fit(tmp_path, "max_steps=6", "save_steps=2", "per_device_train_batch_size=4")
    assert res.global_step == 6
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps.count(3) == 2  # step 3 ran before the crash and again after resuming from 2


def test_lora_adapters_saved_separately_and_mergeable(tmp_path):
    from accel.data.tokenizer import build_tokenizer
    from accel.models.tiny import make_model
    from accel.trainers.lora import apply_lora, load_adapter, merge_lora, save_adapter
    tok = build_tokenizer()
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64)
    model = apply_lora(make_model("ar", tok, **small), r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    ids = torch.tensor([[3, 10, 11, 12]])
    want = model(input_ids=ids).logits
    save_adapter(model, tmp_path / "ad")
    assert (tmp_path / "ad" / "adapter_model.safetensors").exists()
    reloaded = load_adapter(make_model("ar", tok, **small), tmp_path / "ad")
    assert torch.allclose(reloaded(input_ids=ids).logits, want, atol=1e-5)
    merged = merge_lora(reloaded)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert torch.allclose(merged(input_ids=ids).logits, want, atol=1e-4)
    with pytest.raises(Exception, match="not found"):
        apply_lora(make_model("ar", tok, **small), target_modules=["nope_proj"])


@pytest.mark.parametrize("backbone,extra", [("random:dllm", []), ("random:ar", ["lora_r=4"])])
def test_sft_recipe_trains_and_saves_loadable_final(tmp_path, backbone, extra):
    from accel.models.backbone import load_backbone
    from accel.recipes.sft.config import Config
    from accel.recipes.sft.train import run
    cfg = load_config(Config, None, [f"output_dir={tmp_path}", f"backbone={backbone}", "n_per_task=4", "resp_len=8",
                                     "max_steps=3", "save_steps=3", "per_device_train_batch_size=4",
                                     "learning_rate=1e-2", *extra])
    run_dir = run(cfg)
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(recs) == 3 and all(r["loss"] == r["loss"] for r in recs)
    assert ("masked_acc" if backbone.endswith("dllm") else "token_acc") in recs[0]
    ad = load_backbone(str(run_dir / "final"))
    assert ad.kind == ("dllm" if backbone.endswith("dllm") else "ar")
    if extra:
        assert (run_dir / "final" / "adapter" / "adapter_model.safetensors").exists()
