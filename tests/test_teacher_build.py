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


# ------------------------------------------------------------------ the long world's teachers
TINY_LONG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=64)


def _long(kind="ar", **kw):
    return TeacherBuildConfig.for_kind(f"{kind}-long", **{**dict(
        max_steps=4, batch_size=4, eval_every=1000, eval_n=1, eval_gen_len=4, train_per_task=3, warmup_steps=2,
        save_every=2, model_overrides=TINY_LONG), **kw})


def test_long_world_settings():
    from accel.data.long_tasks import LONG_GEN_LEN
    ar, = TeacherBuildConfig.stages_for("ar-long")
    d1, d2 = TeacherBuildConfig.stages_for("dllm-long")
    for c in (ar, d1, d2):
        assert c.world == "long" and c.tasks == ["long"] and c.eval_gen_len == LONG_GEN_LEN and c.save_every > 0
        assert c.model_overrides == {} and c.target >= 0.9  # the short teachers' shape: they are its start
    assert ar.kind == "ar" and d1.kind == "dllm" and d1.shift_logits and d1.attention_anneal_steps > 0
    assert d2.learning_rate < d1.learning_rate and d2.attention_anneal_steps == 0
    short = TeacherBuildConfig.for_kind("dllm")  # the short world's build is unchanged
    assert short.world == "short" and short.model_overrides == {} and short.save_every == 0


def test_long_dllm_batches_use_full_windows_and_answer_blocks():
    import random

    from accel.data.collate import tokenize_examples
    from accel.data.tasks import mixture
    from accel.data.tokenizer import build_tokenizer
    from accel.data.long_tasks import LONG_GEN_LEN
    from accel.trainers.teachers import _dllm_batch
    tok = build_tokenizer()
    pairs = tokenize_examples(tok, mixture("train", 2, tasks=["long"]))
    rng = random.Random(0)
    for _ in range(5):
        inp, tgt, valid, masked = _dllm_batch(pairs, tok, rng, tok.mask_token_id, long=True)
        P = max(len(p) for p, _ in pairs)
        assert inp.shape == (len(pairs), P + LONG_GEN_LEN)  # no row dropped, every window the world's canvas
        assert not masked[:, :P].any() and masked.any(1).all()
        for i, (_p, r) in enumerate(pairs):  # the whole answer (and its end token) is in the window
            assert tgt[i, P:P + len(r)].tolist() == r and tgt[i, P + len(r)] == tok.eos_token_id


def test_long_dllm_batches_hold_decoding_frontiers():
    """Half the long rows are block states whose block is masked from a random cut on (the state a left-to-right
    fill of the block reaches): a masked suffix that starts inside a block, which i.i.d. masking almost never makes."""
    import random

    from accel.data.collate import tokenize_examples
    from accel.data.long_tasks import LONG_BLOCK_LEN
    from accel.data.tasks import mixture
    from accel.data.tokenizer import build_tokenizer
    from accel.trainers.teachers import _dllm_batch
    tok = build_tokenizer()
    pairs = tokenize_examples(tok, mixture("train", 8, tasks=["long"]))
    rng = random.Random(1)
    inside = rows = 0
    for _ in range(10):
        _inp, _tgt, _valid, masked = _dllm_batch(pairs, tok, rng, tok.mask_token_id, long=True)
        P = max(len(p) for p, _ in pairs)
        for row in masked[:, P:]:
            rows += 1
            unmasked = (~row).nonzero().flatten()
            start = int(unmasked[-1]) + 1 if len(unmasked) else 0  # the masked suffix
            inside += start % LONG_BLOCK_LEN != 0 and start < row.numel() - LONG_BLOCK_LEN
    assert 0.2 < inside / rows < 0.6, inside / rows


def test_long_build_marks_the_world_and_resumes_exactly(tmp_path, monkeypatch):
    import pytest

    import accel.trainers.teachers as T
    from accel.models.backbone import adapter_world, load_backbone
    straight = build_teacher(_long(), tmp_path / "a", log=lambda s: None)
    real = T._save_state
    calls = []

    def crash_after_first_save(*args, **kw):
        real(*args, **kw)
        calls.append(args[3])
        raise KeyboardInterrupt  # the build dies right after saving step 2
    monkeypatch.setattr(T, "_save_state", crash_after_first_save)
    with pytest.raises(KeyboardInterrupt):
        build_teacher(_long(), tmp_path / "b", log=lambda s: None)
    assert calls == [2]
    monkeypatch.setattr(T, "_save_state", real)
    logs = []
    resumed = build_teacher(_long(), tmp_path / "b", log=logs.append)
    assert "resumed at step 2" in logs
    wa, wb = (load_file(str(d / "model.safetensors")) for d in (straight, resumed))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    a = load_backbone(str(straight))
    assert a.kind == "ar" and adapter_world(a) == "long"


def test_long_builtin_not_built_is_one_line(monkeypatch, tmp_path):
    import pytest

    import accel.models.backbone as B
    from accel.models.backbone import BackboneError, load_backbone
    monkeypatch.setattr(B, "builtin_dir", lambda kind: tmp_path / kind)
    with pytest.raises(BackboneError, match=r"builtin:dllm-long is not built yet; build it with "
                                            r"`accel teacher build ar-long` then `accel teacher build dllm-long`"):
        load_backbone("builtin:dllm-long")
    with pytest.raises(BackboneError, match=r"`accel teacher build ar-long`"):
        load_backbone("builtin:ar-long")
