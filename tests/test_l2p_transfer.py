"""scripts/l2p_transfer.py (Learn2PD leave-one-task-out transfer) on a tiny random dLLM: the table,
the cache that makes a rerun resume, both τ rules, and one-line errors."""
import json

from accel.scripts import l2p_transfer as L

TINY_RUN = ["--tasks", "copy,reverse", "--n-per-task", "2", "--steps", "3", "--limit", "2", "--calib-per-task", "1",
            "--gen-len", "32", "--batch-size", "4"]


def test_table_cache_and_both_tau_rules(tiny_dir, tmp_path, capsys):
    out = tmp_path / "t"
    args = ["--teacher", tiny_dir("dllm"), "--out", str(out), *TINY_RUN]
    assert L.main(args) == 0
    text = capsys.readouterr().out
    assert "held-out task" in text and "copy" in text and "reverse" in text and "mean" in text
    res = json.loads((out / "transfer-pooled.json").read_text())
    assert [r["task"] for r in res["results"]] == ["copy", "reverse"]
    for r in res["results"]:
        assert set(r) >= {"vanilla", "fast-dllm", "l2p-all", "l2p-held-out", "tau_all", "tau_held_out"}
        assert 0 <= r["l2p-held-out"]["accuracy"] <= 1 and r["l2p-held-out"]["tpf"] > 0
    held_out = json.loads((out / "filters" / "without-copy.pooled.json").read_text())
    assert held_out["train_tasks"] == ["reverse"]  # the held-out task never trains or calibrates its filter

    weights = (out / "filters" / "all.safetensors").stat().st_mtime_ns
    assert L.main(args) == 0  # resumes from the cache: same table, nothing retrained
    assert json.loads((out / "transfer-pooled.json").read_text())["results"] == res["results"]
    assert (out / "filters" / "all.safetensors").stat().st_mtime_ns == weights

    assert L.main(args + ["--calibrate", "per-task"]) == 0  # the same filters, the other τ rule
    assert (out / "filters" / "all.per-task.json").exists() and (out / "transfer-per-task.json").exists()
    assert (out / "filters" / "all.safetensors").stat().st_mtime_ns == weights


def test_per_task_tau_keeps_every_task():
    per = {0.5: {"a": 1.0, "b": 0.5}, 0.9: {"a": 1.0, "b": 1.0}, 0.99: {"a": 1.0, "b": 1.0}}
    assert L.pick_tau(per, {"a": 1.0, "b": 1.0}) == 0.9  # pooled (0.75 at 0.5) would hide b's drop
    assert L.pick_tau({0.5: {"a": 0.5}, 0.9: {"a": 0.8}}, {"a": 1.0}) == 0.9  # none reaches 1.0: the best reached


def test_one_line_errors(tiny_dir, tmp_path, capsys):
    out = tmp_path / "t"
    assert L.main(["--teacher", tiny_dir("ar"), "--out", str(out), *TINY_RUN]) == 2
    assert L.main(["--teacher", tiny_dir("dllm"), "--out", str(out), "--tasks", "copy"]) == 2
    (out).mkdir(exist_ok=True)
    (out / "settings.json").write_text("{}")
    assert L.main(["--teacher", tiny_dir("dllm"), "--out", str(out), *TINY_RUN]) == 2
    text = capsys.readouterr().err
    err = [line for line in text.splitlines() if line.startswith("l2p_transfer: ")]
    assert len(err) == 3 and "Traceback" not in text
    assert "AR model" in err[0] and "two tasks" in err[1] and "another --out" in err[2]


def test_shifted_copies_move_each_step_as_a_whole():
    import torch

    from accel.recipes.learn2pd.model import shifted_copies
    conf = torch.arange(8.0).view(2, 4)
    t = {"conf": conf, "label": (conf > 2).float(), "masked": conf < 6, "prompt_idx": torch.tensor([0, 1])}
    s = shifted_copies(t, 4)
    assert s["conf"].shape == (8, 4) and s["prompt_idx"].tolist() == [0, 1] * 4
    assert torch.equal(s["label"], (s["conf"] > 2).float()) and torch.equal(s["masked"], s["conf"] < 6)
    assert s["conf"][2].tolist() == [3.0, 0.0, 1.0, 2.0]  # offset 1 of row 0
    assert shifted_copies(t, 1) is t


def test_shift_copies_config_is_checked():
    import pytest

    from accel.recipes.learn2pd.config import Config
    from accel.trainers.config import ConfigError
    from accel.trainers.loading import load_config
    with pytest.raises(ConfigError, match="shift_copies"):
        load_config(Config, None, ["shift_copies=0"])
