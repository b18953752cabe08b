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
