"""Teacher trajectories: layout, canvas padding, answer filtering, sharded resume, prompt sources."""
import json

import pytest

from accel.decoding.dllm import DecodeResult
from accel.recipes.shared import trajectories as T


@pytest.fixture(scope="module")
def adapter(tiny_adapter):
    return tiny_adapter("dllm")


class FakeTeacher:
    """Stands in for generate_vanilla: answers rows correctly or not by a rule; counts calls."""

    def __init__(self, right, fail_after=None):
        self.right, self.fail_after, self.calls = right, fail_after, 0

    def __call__(self, adapter, prompts, gen_len, block_len, steps):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        tok = adapter.tokenizer
        texts, tokens = [], []
        for p in prompts:
            text = self.right(tok.decode(p))
            texts.append(text)
            tokens.append(tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        return DecodeResult(tokens=tokens, nfe=[gen_len] * len(prompts), texts=texts)


def _jsonl(tmp_path, n):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"copy {i}{i}{i}", "answer": f"{i}{i}{i}"}) for i in range(n)))
    return path


def _echo_even(prompt_text):
    """Right answer for even digits, a wrong one for odd."""
    d = [c for c in prompt_text.split("copy")[-1] if c.isdigit()][0]
    return d * 3 if int(d) % 2 == 0 else "5"


def test_real_teacher_layout_and_canvas(adapter, tmp_path):
    recs = T.load_prompts("builtin", tasks=["copy", "sort"], n_per_task=3)
    out = T.generate_trajectories(adapter, recs, tmp_path / "t", gen_len=32, block_len=16, batch_size=4,
                                  shard_size=4, filter_correct=False, progress=False)
    ds, meta = T.load_trajectories(out)
    assert len(ds) == 6 and meta["complete"] and meta["gen_len"] == 32 and meta["block_len"] == 16
    assert meta["teacher"] == "random:dllm" and meta["n_checked"] == 6
    assert set(ds.column_names) == {"prompt", "prompt_ids", "response_ids", "response", "task", "source"}
    assert sorted({r["task"] for r in ds}) == ["copy", "sort"]
    for r in ds:
        assert len(r["response_ids"]) == 32
        ids = r["response_ids"]
        if adapter.eos_ids[0] in ids:  # after the first end token: end tokens only
            first = ids.index(adapter.eos_ids[0])
            assert set(ids[first:]) == {adapter.eos_ids[0]}
    # the canvas is what the sampler produced for that prompt, alone
    from accel.decoding.dllm import generate_vanilla
    one = generate_vanilla(adapter, [ds[0]["prompt_ids"]], gen_len=32, block_len=16, steps=32)
    assert ds[0]["response_ids"] == T.canvas(one.tokens[0], 32, adapter.eos_ids[0])


def test_filter_keeps_only_verified(adapter, tmp_path, monkeypatch):
    import accel.decoding.dllm as dllm
    monkeypatch.setattr(dllm, "generate_vanilla", FakeTeacher(_echo_even))
    recs = T.load_prompts(str(_jsonl(tmp_path, 10)))
    out = T.generate_trajectories(adapter, recs, tmp_path / "t", gen_len=16, block_len=16, batch_size=3,
                                  shard_size=1, progress=False)  # shards of one: the odd ones come out empty
    ds, meta = T.load_trajectories(out)
    assert sorted(ds["response"]) == ["000", "222", "444", "666", "888"]
    assert meta["n_kept"] == 5 and meta["teacher_accuracy"] == 0.5
    # without an answer there is no checker: everything is kept
    (tmp_path / "n.jsonl").write_text("\n".join(json.dumps({"prompt": f"copy {i}{i}{i}"}) for i in range(4)))
    out2 = T.generate_trajectories(adapter, T.load_prompts(str(tmp_path / "n.jsonl")), tmp_path / "t2",
                                   gen_len=16, block_len=16, progress=False)
    ds2, meta2 = T.load_trajectories(out2)
    assert len(ds2) == 4 and meta2["n_checked"] == 0 and meta2["teacher_accuracy"] is None
    monkeypatch.setattr(dllm, "generate_vanilla", FakeTeacher(lambda _: "5"))
    with pytest.raises(T.TrajectoryError, match="no trajectory passed"):
        T.generate_trajectories(adapter, recs, tmp_path / "t3", gen_len=16, block_len=16, progress=False)


def test_builtin_checker_scores_suite_tasks():
    rec = T.load_prompts("builtin", tasks=["arith", "shuffle"], n_per_task=1)
    arith, shuffle = rec
    assert T.is_correct(arith, arith["example"]["response"]) is True
    assert T.is_correct(arith, "1+1=2;#3000") is False
    assert T.is_correct(shuffle, shuffle["example"]["meta"]["items"][::-1]) is True
    assert T.is_correct({"answer": "42", "example": None}, "6*7=42;#42") is True
    assert T.is_correct({"answer": "42", "example": None}, "142") is False


def test_resume_after_interruption(adapter, tmp_path, monkeypatch):
    import accel.decoding.dllm as dllm
    recs = T.load_prompts(str(_jsonl(tmp_path, 10)))
    kw = dict(gen_len=16, block_len=16, batch_size=2, shard_size=4, progress=False)
    monkeypatch.setattr(dllm, "generate_vanilla", FakeTeacher(_echo_even, fail_after=3))
    with pytest.raises(KeyboardInterrupt):  # dies inside the second shard (batches of 2, shards of 4)
        T.generate_trajectories(adapter, recs, tmp_path / "t", **kw)
    assert (tmp_path / "t" / "shards" / "00000").is_dir() and not (tmp_path / "t" / "shards" / "00001").exists()
    assert not T.is_complete(tmp_path / "t")
    with pytest.raises(T.TrajectoryError, match="incomplete"):
        T.load_trajectories(tmp_path / "t")
    again = FakeTeacher(_echo_even)
    monkeypatch.setattr(dllm, "generate_vanilla", again)
    T.generate_trajectories(adapter, recs, tmp_path / "t", **kw)
    assert again.calls == 3  # shard 0 (2 batches) was kept; shards 1 and 2 (2 + 1 batches) decoded
    monkeypatch.setattr(dllm, "generate_vanilla", FakeTeacher(_echo_even))
    T.generate_trajectories(adapter, recs, tmp_path / "fresh", **kw)
    a, _ = T.load_trajectories(tmp_path / "t")
    b, _ = T.load_trajectories(tmp_path / "fresh")
    assert a.to_list() == b.to_list()
    # a finished dir is reused as is; other settings are refused
    T.generate_trajectories(adapter, recs, tmp_path / "t", **kw)
    with pytest.raises(T.TrajectoryError, match="other settings"):
        T.generate_trajectories(adapter, recs, tmp_path / "t", **dict(kw, gen_len=32))


def test_prompt_sources_and_errors(tmp_path):
    from datasets import Dataset

    from accel.data.prompts import PromptSourceError
    Dataset.from_dict({"prompt": ["copy 12", "sort 31"], "answer": ["12", "13"]}).save_to_disk(str(tmp_path / "hf"))
    recs = T.load_prompts(str(tmp_path / "hf"))
    assert [r["prompt"] for r in recs] == ["copy 12", "sort 31"] and recs[1]["answer"] == "13"
    assert len(T.load_prompts("builtin", n_per_task=2, limit=5)) == 5
    with pytest.raises(PromptSourceError, match="no such file"):
        T.load_prompts(str(tmp_path / "nope.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\nnot json\n')
    with pytest.raises(PromptSourceError, match="bad.jsonl:2"):
        T.load_prompts(str(tmp_path / "bad.jsonl"))
    (tmp_path / "np.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(PromptSourceError, match="'prompt'"):
        T.load_prompts(str(tmp_path / "np.jsonl"))
    with pytest.raises(PromptSourceError, match="only applies"):
        T.load_prompts(str(tmp_path / "hf"), tasks=["copy"])
