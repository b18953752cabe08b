"""The teacher build is reproducible (same seed and threads -> same weights) and resumable."""
import torch
from safetensors.torch import load_file

from accel.trainers.teachers import TeacherBuildConfig, build_teacher


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


def test_dllm_build_has_reweighted_refinement_stages():
    from accel.trainers.teachers import parse_task_weights
    s1, *later = TeacherBuildConfig.stages_for("dllm")
    assert later and s1.attention_anneal_steps > 0
    for s in later:  # refinement stages: lower LR, plain bidirectional attention, arithmetic weighted up
        assert s.learning_rate < s1.learning_rate and s.attention_anneal_steps == 0
        assert parse_task_weights(s.task_weights)["arith"] > 1
    assert len(TeacherBuildConfig.stages_for("ar")) == 1


def test_task_weights_are_validated():
    import pytest

    from accel.data.tasks import UnknownTaskError
    from accel.trainers.teachers import parse_task_weights
    assert parse_task_weights(" arith=2, copy=1 ") == {"arith": 2, "copy": 1}
    with pytest.raises(ValueError, match="task=N"):
        parse_task_weights("arith=0")
    with pytest.raises(UnknownTaskError):
        parse_task_weights("arithm=2")


def test_annealed_mask_goes_from_causal_to_bidirectional():
    import random

    from accel.trainers.teachers import annealed_mask
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, :2] = False  # left padding stays invisible
    causal = annealed_mask(valid, 0.0, random.Random(0))
    assert torch.equal(causal[0, 0], torch.ones(6, 6, dtype=torch.bool).tril())
    full = annealed_mask(valid, 1.0, random.Random(0))
    assert full[0].all() and not full[1, 0, :, :2].any() and full[1, 0, :, 2:].all()
    half = annealed_mask(valid, 0.5, random.Random(0))[0, 0]
    lower = torch.ones(6, 6, dtype=torch.bool).tril()
    assert half[lower].all() and 0 < half[~lower].sum() < 15
