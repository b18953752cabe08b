"""The teacher build is reproducible (same seed and threads -> same weights) and resumable."""
import torch
from safetensors.torch import load_file

from accel.models.teachers import TeacherBuildConfig, build_teacher


def _cfg(**kw):
    return TeacherBuildConfig.for_kind("ar", max_steps=4, batch_size=8, eval_every=1000, eval_n=1,
                                       train_per_task=20, warmup_steps=2, **kw)


def test_same_seed_same_weights(tmp_path):
    a = build_teacher(_cfg(seed=1), tmp_path / "a", log=lambda s: None)
    b = build_teacher(_cfg(seed=1), tmp_path / "b", log=lambda s: None)
    c = build_teacher(_cfg(seed=2), tmp_path / "c", log=lambda s: None)
    wa, wb, wc = (load_file(str(d / "model.safetensors")) for d in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_dllm_starts_from_ar_with_shifted_logits(tmp_path):
    ar = build_teacher(_cfg(seed=0), tmp_path / "ar", log=lambda s: None)
    cfg = TeacherBuildConfig.for_kind("dllm", max_steps=2, batch_size=8, eval_every=1000, eval_n=1,
                                      train_per_task=20, warmup_steps=1, init_from=str(ar))
    d = build_teacher(cfg, tmp_path / "dllm", log=lambda s: None)
    from accel.models.backbone import load_backbone
    a = load_backbone(str(d))
    assert a.kind == "dllm" and a.shift_logits and a.mask_id == a.tokenizer.mask_token_id
