"""Shared test set-up: environment, and the tiny random-init models most tests decode with.

`TINY` is the model size every test uses (a 2-layer, 32-wide Llama over the built-in
tokenizer: milliseconds per forward on a CPU). Fixtures:

- `tok`: the built-in tokenizer.
- `tiny_model(kind, seed=0, **overrides)`: a fresh eval-mode model ('dllm' or 'ar').
- `tiny_adapter(kind, seed=0, **overrides)`: the same wrapped as a backbone `Adapter`.
- `tiny_dir(kind, seed=0)`: a saved model + tokenizer directory (made once per session), for
  code that loads a TARGET path (`load_backbone`, `accel bench DIR`, a recipe's backbone=).
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64)


@pytest.fixture(scope="session")
def tok():
    from accel.data.tokenizer import build_tokenizer
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tok):
    def make(kind: str, seed: int = 0, **overrides):
        import torch

        from accel.models.tiny import make_model
        torch.set_num_threads(1)
        return make_model(kind, tok, seed=seed, **{**TINY, **overrides}).eval()
    return make


@pytest.fixture(scope="session")
def tiny_adapter(tok, tiny_model):
    def make(kind: str, seed: int = 0, **overrides):
        from accel.models.backbone import Adapter
        return Adapter(model=tiny_model(kind, seed, **overrides), tokenizer=tok, family="builtin", kind=kind,
                       source=f"random:{kind}", mask_id=tok.mask_token_id if kind == "dllm" else None,
                       eos_ids=(tok.eos_token_id,))
    return make


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tok, tiny_model):
    made = {}

    def get(kind: str, seed: int = 0) -> str:
        if (kind, seed) not in made:
            d = tmp_path_factory.mktemp(f"tiny-{kind}-{seed}")
            tiny_model(kind, seed).save_pretrained(str(d))
            tok.save_pretrained(str(d))
            made[(kind, seed)] = str(d)
        return made[(kind, seed)]
    return get



# the load self-check keeps probe fingerprints here; tests must not write into the user's home
os.environ.setdefault("ACCEL_CACHE_DIR", tempfile.mkdtemp(prefix="accel-test-cache-"))

PUBLISHED_DLLM = Path(os.environ.get("ACCEL_PUBLISHED_DLLM")
                      or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "published-dllm")
"""LLaDA and Dream model code as published, with tiny configs and make_tiny.py (../shared beside the repo)."""


@pytest.fixture(scope="session")
def published_dllm(tmp_path_factory):
    """{'llada', 'dream', 'llada-nobias'}: tiny seeded random-weight model directories built from the
    published code, once per session. 'llada-nobias' is the older LLaDA variant whose attention
    drops the attention bias (attn_mask=None)."""
    make = PUBLISHED_DLLM / "make_tiny.py"
    if not make.exists():
        pytest.skip(f"published dLLM fixtures not found at {PUBLISHED_DLLM} (set ACCEL_PUBLISHED_DLLM)")
    root = tmp_path_factory.mktemp("published-dllm")
    out = {}
    for fam in ("llada", "dream"):
        d = root / fam
        subprocess.run([sys.executable, str(make), fam, str(d), "--seed", "0"], check=True, capture_output=True,
                       timeout=300)
        out[fam] = str(d)
    old = root / "llada-nobias"
    shutil.copytree(out["llada"], old)
    os.chmod(old, 0o755)
    code = old / "modeling_llada.py"
    os.chmod(code, 0o644)
    text = code.read_text()
    assert "attn_mask=attention_bias," in text
    code.write_text(text.replace("attn_mask=attention_bias,", "attn_mask=None,"))
    out["llada-nobias"] = str(old)
    return out


@pytest.fixture
def recipe_cfg(tmp_path):
    """`recipe_cfg(name, "key=value", ...)`: the recipe's Config loaded as `accel train NAME key=value ...`
    loads it (checks included), its output_dir under this test's tmp_path."""
    def load(recipe: str, *over: str):
        from accel.recipes import get
        from accel.trainers.loading import load_config
        return load_config(get(recipe).Config, None, [f"output_dir={tmp_path / 'run'}", *over], recipe=recipe)
    return load


@pytest.fixture(scope="session")
def check_adapter_export():
    """For the LoRA-distillation recipes: an `adapter` export references the teacher, applies the
    adapters at load (same logits as the merged export, not the teacher's), and runs the
    baselines on the teacher itself."""
    def check(export, bench_methods, run_dir, out_dir, teacher_dir, merged_model, prompt_ids, method: str):
        import torch

        from accel.decoding.checkpoint import load_checkpoint
        from accel.models.backbone import load_backbone
        ck = load_checkpoint(export(run_dir, out_dir, format="adapter"))
        assert ck.backbone_target() == str(teacher_dir.resolve()) and ck.weight_files == ["adapter_model.safetensors"]
        teacher = load_backbone(ck.backbone_target())
        methods = bench_methods(ck, teacher)
        x = torch.tensor([prompt_ids])
        with torch.no_grad():
            a = methods[method].model.model(input_ids=x).logits
            b = merged_model(input_ids=x).logits
            c = teacher.model(input_ids=x).logits
        assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, c, atol=1e-5)
        assert methods["vanilla"].model is teacher
    return check


@pytest.fixture(scope="session")
def check_export_refusals():
    """An exporter refuses, in one line, an unfinished run, a format it does not write and an option
    its spec has no field for."""
    def check(export, tmp_path, unfinished: str, format: str, format_match: str):
        from accel.decoding.checkpoint import CheckpointError
        with pytest.raises(CheckpointError, match=unfinished):
            export(tmp_path, tmp_path / "ck")
        with pytest.raises(CheckpointError, match=format_match):
            export(tmp_path, tmp_path / "ck", format=format)
        with pytest.raises(CheckpointError, match="no option"):
            export(tmp_path, tmp_path / "ck", temperature=1)
    return check
