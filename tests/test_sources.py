"""Real data readers on tiny files: truncated ShareGPT, splits, English filter, MT-Bench, prompt files; draft vocab."""
import json
from collections import Counter

import pytest

from accel.data import sources as S
from accel.data.draft_vocab import coverage, inverse_map, select_draft_vocab, token_counts


def _conv(i, human="hello", lang_text=None):
    return {"id": f"c{i}", "conversations": [{"from": "human", "value": lang_text or f"{human} {i}"},
                                              {"from": "gpt", "value": f"answer {i}"}]}


def test_truncated_json_array_keeps_complete_records(tmp_path):
    recs = [_conv(i) for i in range(5)]
    text = json.dumps(recs, indent=1)
    cut = text[:text.index('"c4"') + 10]  # mid-record, like the real file
    f = tmp_path / "sg.json"
    f.write_text(cut)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut)
    got, truncated = S.read_json_records(f)
    assert truncated and [r["id"] for r in got] == ["c0", "c1", "c2", "c3"]
    f.write_text(text)
    got, truncated = S.read_json_records(f)
    assert not truncated and len(got) == 5


def test_sharegpt_conversations_split_filter_and_first_turn(tmp_path):
    recs = [_conv(i) for i in range(400)]
    recs.append(_conv(400, lang_text="Привет, как дела? Расскажи о себе"))
    recs.append({"id": "gpt-first", "conversations": [{"from": "gpt", "value": "hi"},
                                                      {"from": "human", "value": "second is the first human"}]})
    recs.append({"id": "empty", "conversations": []})
    f = tmp_path / "sg.json"
    f.write_text(json.dumps(recs))
    train = S.sharegpt_conversations(f, "train")
    held = S.sharegpt_conversations(f, "held")
    assert {r["id"] for r in train}.isdisjoint({r["id"] for r in held})
    assert len(train) + len(held) == 402  # the empty conversation has no prompt
    assert 0 < len(held) < 30  # ~2%
    # the split is a property of the record, not of the file: dropping records moves nothing
    f.write_text(json.dumps(recs[:200]))
    first = {f"c{i}" for i in range(200)}
    assert {r["id"] for r in S.sharegpt_conversations(f, "held")} == {r["id"] for r in held} & first
    f.write_text(json.dumps(recs))
    allr = {r["id"]: r for r in S.sharegpt_conversations(f, "all")}
    assert allr["gpt-first"]["prompt"] == "second is the first human"
    assert allr["c7"]["conversation"][1] == {"role": "assistant", "content": "answer 7"}
    english = {r["id"] for r in S.sharegpt_conversations(f, "all", english=True)}
    assert "c400" in allr and "c400" not in english and "c5" in english
    # seeded order: same seed, same order; another seed, another order
    assert [r["id"] for r in S.sharegpt_conversations(f, "train", seed=0)] == [r["id"] for r in train]
    assert [r["id"] for r in S.sharegpt_conversations(f, "train", seed=1)] != [r["id"] for r in train]


def test_mtbench_and_prompt_files(tmp_path):
    q = tmp_path / "question.jsonl"
    q.write_text("\n".join(json.dumps({"question_id": 81 + i, "category": c, "turns": [f"q{i}", f"follow {i}"]})
                           for i, c in enumerate(["writing", "writing", "coding"])) + "\n")
    qs = S.mtbench_questions(q)
    assert [x["category"] for x in qs] == ["writing", "writing", "coding"]
    assert qs[2]["prompt"] == "q2" and qs[2]["turns"][1] == "follow 2"
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "a", "category": "x"}\n{"turns": ["b", "c"]}\n'
                 '{"messages": [{"role": "user", "content": "d"}]}\n')
    assert [(r["prompt"], r["category"]) for r in S.prompt_records(str(p))] == [("a", "x"), ("b", "all"), ("d", "all")]
    p.write_text('{"text": "no prompt"}\n')
    with pytest.raises(S.SourceError, match="record 1"):
        S.prompt_records(str(p))
    with pytest.raises(S.SourceError, match="no such file"):
        S.prompt_records(str(tmp_path / "missing.jsonl"))


def test_prompt_set_groups_and_identity():
    from accel.decoding.prompt_sets import identical_count, trimmed
    assert trimmed([5, 6, 2, 9], (2,), 10) == [5, 6, 2]
    assert trimmed([5, 6, 7], (2,), 2) == [5, 6]
    # tokens after the end token (padding) do not count; a different token does
    assert identical_count([[5, 2, 0, 0], [5, 6]], [[5, 2, 7, 7], [5, 7]], (2,), 4) == 1


def test_draft_vocab_selection_and_maps():
    counts = token_counts([[5, 5, 5, 7, 7, 9], [7, 11]])
    assert counts == Counter({5: 3, 7: 3, 9: 1, 11: 1})
    assert select_draft_vocab(counts, 2) == [5, 7]              # ties: lower id first
    assert select_draft_vocab(counts, 3, always=[2]) == [2, 5, 7]  # the end token is always drafted
    assert select_draft_vocab(counts, 10) == [5, 7, 9, 11]        # no fill without the full vocabulary
    assert select_draft_vocab(counts, 7, full_vocab=12) == [5, 7, 9, 11, 0, 1, 2]  # low ids fill the rest
    t2d = inverse_map([5, 7, 9], 12)
    assert t2d[7] == 1 and t2d[6] == -1
    assert coverage([5, 7], [5, 7, 9, 9]) == 0.5
    with pytest.raises(ValueError):
        select_draft_vocab(counts, 0)


def test_mtbench_second_turns_continue_the_targets_own_answer(tmp_path, monkeypatch, tiny_adapter):
    tiny_adapter = tiny_adapter("ar")
    from accel.data.prompts import encode_prompt
    from accel.decoding.ar import generate_greedy
    from accel.decoding.prompt_sets import answer_first_turns, load_prompt_set, trimmed
    q = tmp_path / "question.jsonl"
    q.write_text("\n".join(json.dumps({"question_id": i, "category": c, "turns": t}) for i, (c, t) in enumerate(
        [("writing", ["copy 12", "sort 7 3"]), ("coding", ["reverse 42"]), ("coding", ["copy 9", "copy 55"])])) + "\n")
    monkeypatch.setattr(S, "mtbench_path", lambda: q)
    groups = load_prompt_set("mtbench-turn2", limit=5)
    assert {c: [e["id"] for e in exs] for c, exs in groups.items()} == {"writing": ["0"], "coding": ["2"]}  # 1-turn dropped
    assert answer_first_turns(tiny_adapter, groups, gen_len=6, batch_size=2) == 2
    conv = groups["coding"][0]["prompt"]
    assert [m["role"] for m in conv] == ["user", "assistant", "user"] and conv[2]["content"] == "copy 55"
    first = generate_greedy(tiny_adapter, [encode_prompt(tiny_adapter.tokenizer, "copy 9")], 6).tokens[0]
    eos = tiny_adapter.eos_ids
    assert conv[1]["content"] == tiny_adapter.tokenizer.decode([t for t in trimmed(first, eos, 6) if t not in eos],
                                                               skip_special_tokens=True)
    assert len(encode_prompt(tiny_adapter.tokenizer, conv)) > len(encode_prompt(tiny_adapter.tokenizer, "copy 9"))
    assert answer_first_turns(tiny_adapter, groups, gen_len=6, batch_size=2) == 0  # already conversations
    assert all(isinstance(e["prompt"], str) for e in load_prompt_set("mtbench", limit=5)["coding"])
