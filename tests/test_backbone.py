import json

import pytest
import torch

from accel.models.masks import block_causal_mask, full_mask, position_ids
from accel.models.backbone import BackboneError, load_backbone



@pytest.fixture(scope="module")
def tiny_dirs(tiny_dir):
    from pathlib import Path
    return {kind: Path(tiny_dir(kind, seed=1)) for kind in ("dllm", "ar")}


def test_load_families(tiny_dirs):
    a = load_backbone(str(tiny_dirs["dllm"]))
    assert (a.family, a.kind, a.mask_id, a.shift_logits) == ("builtin", "dllm", a.tokenizer.mask_token_id, False)
    b = load_backbone(str(tiny_dirs["ar"]))
    assert (b.family, b.kind, b.mask_id) == ("causal-lm", "ar", None)
    assert b.eos_ids == (b.tokenizer.eos_token_id,)


def test_shifted_logits_alignment(tiny_dirs, tmp_path):
    import shutil
    d = tmp_path / "shifted"
    shutil.copytree(tiny_dirs["dllm"], d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["accel_dllm"]["shift_logits"] = True
    (d / "config.json").write_text(json.dumps(cfg))
    plain, shifted = load_backbone(str(tiny_dirs["dllm"])), load_backbone(str(d))
    assert shifted.shift_logits
    x = torch.randint(0, 20, (1, 6))
    valid = torch.ones_like(x, dtype=torch.bool)
    lp, _ = plain.dllm_logits(x, full_mask(valid), position_ids(valid))
    ls, _ = shifted.dllm_logits(x, full_mask(valid), position_ids(valid))
    assert torch.allclose(ls[:, 1:], lp[:, :-1])  # Dream: logits[i-1] predicts token i


def test_bad_targets(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone(str(tmp_path / "nope"))
    with pytest.raises(BackboneError, match="no config.json"):
        load_backbone(str(tmp_path))
    with pytest.raises(BackboneError, match="choose builtin:dllm, builtin:ar, builtin:dllm-long, builtin:ar-long"):
        load_backbone("builtin:xyz")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llada", "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(BackboneError, match="--trust-remote-code"):
        load_backbone(str(tmp_path))


def test_bidirectional_mask_changes_attention(tiny_dirs):
    a = load_backbone(str(tiny_dirs["dllm"]))
    x = torch.randint(7, 20, (1, 8))
    valid = torch.ones_like(x, dtype=torch.bool)
    full, _ = a.dllm_logits(x, full_mask(valid), position_ids(valid))
    x2 = x.clone()
    x2[0, -1] = 21
    full2, _ = a.dllm_logits(x2, full_mask(valid), position_ids(valid))
    assert not torch.allclose(full[0, 0], full2[0, 0])  # position 0 sees the future: bidirectional


def test_block_causal_mask_matches_explicit():
    valid = torch.tensor([[False, True, True, True, True, True, True, True]])
    m = block_causal_mask(valid, prompt_len=2, block_len=3)[0, 0]
    blk = [-1, -1, 0, 0, 0, 1, 1, 1]
    for q in range(8):
        for k in range(8):
            assert bool(m[q, k]) == (valid[0, k].item() and blk[k] <= blk[q])


def test_weights_stamp_follows_the_weights(tmp_path):
    """Data caches key on it: a rewritten weight file (same name, same size) must change it."""
    from accel.models.weights import weights_stamp
    assert weights_stamp("random:dllm") == "" and weights_stamp(str(tmp_path)) == ""
    f = tmp_path / "model.safetensors"
    data = bytearray(range(256)) * 20000  # 5 MB: the first and last MiB are read, not the middle
    f.write_bytes(bytes(data))
    a = weights_stamp(str(tmp_path))
    assert len(a) == 16 and a == weights_stamp(str(tmp_path))
    data[-10] ^= 1
    f.write_bytes(bytes(data))
    b = weights_stamp(str(tmp_path))
    assert b != a
    (tmp_path / "notes.txt").write_text("not a weight file")
    assert weights_stamp(str(tmp_path)) == b
    assert weights_stamp("builtin:dllm") != weights_stamp("builtin:ar") != ""


def test_cached_decodes_use_the_installed_cache_keyword(tiny_adapter):
    """transformers 5.24 renamed `past_key_values` to `cache` (keyword and output field) and warns on the
    old name (a FutureWarning, and once per process on its logger); 5.0-5.23 only know the old name.
    `accel.models.kv` picks the declared one: no cached forward of ours may use the deprecated name."""
    import logging
    import warnings

    from accel.decoding.ar import generate_greedy
    from accel.decoding.dllm import generate_threshold
    from accel.recipes.shared.self_distill import generate_with_states

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.seen = []

        def emit(self, record):
            self.seen.append(record.getMessage())

    hf_logger = logging.getLogger("transformers")  # propagates nothing to the root: caplog would not see it
    keep = Keep()
    hf_logger.addHandler(keep)
    if hasattr(logging.Logger.warning_once, "cache_clear"):  # transformers logs it once per process
        logging.Logger.warning_once.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ar = load_backbone("builtin:ar")
            prompts = [[5, 6, 7], [8, 9]]
            generate_greedy(ar, prompts, max_new_tokens=4)
            generate_with_states(ar, prompts, 4)  # self-distill's body-only forwards
            generate_threshold(tiny_adapter("dllm"), prompts, gen_len=8, block_len=4, cache="dual")
    finally:
        hf_logger.removeHandler(keep)
    said = [str(w.message) for w in caught] + keep.seen
    assert not [m for m in said if "past_key_values" in m], said
