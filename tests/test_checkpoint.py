"""The inference-checkpoint format: round trip, atomic replace, and every CheckpointError."""
from __future__ import annotations

import json

import pytest
import torch

from accel.decoding import checkpoint as ck
from accel.decoding.checkpoint import CheckpointError, is_checkpoint, load_checkpoint, save_checkpoint


def _section(**kw):
    return {"recipe": "learn2pd", "backbone": "builtin:dllm", **kw}


def test_round_trip(tmp_path):
    emb = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {"filter.w": torch.randn(4, 4), "emb": emb, "head": emb}  # "head" shares storage (tied)
    out = save_checkpoint(tmp_path / "ck", _section(decode={"threshold": 0.96}, filter_hidden=32), tensors,
                          extra_files={"README.md": "hello", "blob.bin": b"\x00\x01"},
                          backbone_config={"model_type": "llama", "hidden_size": 4})
    assert is_checkpoint(out)
    c = load_checkpoint(out)
    assert c.accel["format_version"] == ck.FORMAT_VERSION == 1
    assert c.recipe == "learn2pd" and c.decode == {"threshold": 0.96} and c.accel["filter_hidden"] == 32
    assert c.weight_files == ["model.safetensors"]
    assert c.config["model_type"] == "llama" and c.config["hidden_size"] == 4
    got = c.tensors()
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert torch.equal(got[k], v)
    assert (out / "README.md").read_text() == "hello" and (out / "blob.bin").read_bytes() == b"\x00\x01"
    assert not list(tmp_path.glob(".ck.*"))  # no temp dirs left behind


def test_no_tensors_and_default_decode(tmp_path):
    c = load_checkpoint(save_checkpoint(tmp_path / "ck", _section()))
    assert c.decode == {} and c.weight_files == [] and c.tensors() == {}


def test_backbone_target_resolution(tmp_path):
    c = load_checkpoint(save_checkpoint(tmp_path / "ck", _section(backbone="../base")))
    assert c.backbone_target() == str((tmp_path / "base").resolve())
    c = load_checkpoint(save_checkpoint(tmp_path / "ck2", _section(backbone=".")))
    assert c.backbone_target() == str((tmp_path / "ck2").resolve())
    c = load_checkpoint(save_checkpoint(tmp_path / "ck3", _section()))
    assert c.backbone_target() == "builtin:dllm"


def test_replace_is_atomic_when_the_write_crashes(tmp_path, monkeypatch):
    out = tmp_path / "ck"
    save_checkpoint(out, _section(version="old"), {"w": torch.zeros(2)})
    import accel.core.files as files
    real_sync = files.fsync_tree

    def crash(path):  # every file written, nothing published yet
        raise OSError("disk full")

    monkeypatch.setattr(files, "fsync_tree", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(out, _section(version="new"), {"w": torch.ones(2)}, extra_files={"x.txt": "x"})
    c = load_checkpoint(out)
    assert c.accel["version"] == "old" and torch.equal(c.tensors()["w"], torch.zeros(2))
    assert not (out / "x.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]

    monkeypatch.setattr(files, "fsync_tree", real_sync)
    save_checkpoint(out, _section(version="new"), {"w": torch.ones(2)})
    c = load_checkpoint(out)
    assert c.accel["version"] == "new" and torch.equal(c.tensors()["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # the old one was removed


def test_never_replaces_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="exists and is not an accel checkpoint"):
        save_checkpoint(tmp_path / "mine", _section())
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", _section())  # an empty directory is fine
    with pytest.raises(CheckpointError, match="'recipe'"):
        save_checkpoint(tmp_path / "x", {"backbone": "builtin:dllm"})
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(tmp_path / "x", _section(), extra_files={"config.json": "{}"})


def _write_config(d, cfg):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return d


@pytest.mark.parametrize("setup, match", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "f.json").write_text("{}") and p / "f.json", "is a file"),
    (lambda p: (p / "d").mkdir() or p / "d", "no config.json"),
    (lambda p: _write_config(p / "d", "{not json"), "not valid JSON"),
    (lambda p: _write_config(p / "d", {"model_type": "llama"}),
     "is a model directory, not an accel checkpoint.*TARGET directly or export"),
    (lambda p: _write_config(p / "d", {"accel": {"format_version": 2, "recipe": "r", "backbone": "b"}}),
     "format_version 2 but this accel reads version 1"),
    (lambda p: _write_config(p / "d", {"accel": {"format_version": 1, "backbone": "b"}}), "no 'recipe'"),
    (lambda p: _write_config(p / "d", {"accel": {"format_version": 1, "recipe": "r", "backbone": "b",
                                                 "weights": ["model.safetensors"]}}),
     "weight file model.safetensors is missing"),
])
def test_load_errors(tmp_path, setup, match):
    path = setup(tmp_path)
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_refuses_pickled_weights(tmp_path):
    d = _write_config(tmp_path / "d", {"accel": {"format_version": 1, "recipe": "r", "backbone": "b",
                                                 "weights": ["pytorch_model.bin"]}})
    (d / "pytorch_model.bin").write_bytes(b"not opened")
    with pytest.raises(CheckpointError, match="not safetensors"):
        load_checkpoint(d)


def test_written_files_are_group_readable(tmp_path):
    """safetensors creates files 0600; an exported checkpoint must be readable like any file (umask 022)."""
    import os
    old = os.umask(0o022)
    try:
        out = save_checkpoint(tmp_path / "ck", _section(), {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    for name in ("model.safetensors", "config.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    assert out.stat().st_mode & 0o777 == 0o755
