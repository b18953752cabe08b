import pytest

from accel.data import long_tasks, tasks
from accel.data.tokenizer import build_tokenizer, chat_prompt_ids


@pytest.mark.parametrize("name", tasks.TASK_NAMES)
def test_generators_deterministic_and_self_consistent(name):
    a = tasks.generate(name, "train", 50, seed=3)
    b = tasks.generate(name, "train", 50, seed=3)
    assert a == b
    assert a != tasks.generate(name, "train", 50, seed=4)
    for ex in a:
        assert tasks.score(ex, ex["response"]), ex  # the reference response is correct


@pytest.mark.parametrize("name", tasks.TASK_NAMES)
def test_test_prompts_not_in_train(name):
    test = {e["prompt"] for e in tasks.test_split(name)}
    train = {e["prompt"] for e in tasks.generate(name, "train", 2000)}
    assert len(test) == 200
    assert not (test & train)


def test_scoring():
    ex = tasks.generate("arith", "test", 1)[0]
    assert tasks.score(ex, "garbage;#" + ex["answer"])
    assert not tasks.score(ex, ex["response"].replace("#", ""))
    sh = {"task": "shuffle", "answer": "123", "meta": {"items": "123"}}
    assert tasks.score(sh, "312") and not tasks.score(sh, "112") and not tasks.score(sh, "1234")
    pk = {"task": "pick3", "answer": "123", "meta": {"items": "12345"}}
    assert tasks.score(pk, "531") and not tasks.score(pk, "553") and not tasks.score(pk, "539")
    rev = {"task": "reverse", "answer": "321", "meta": {}}
    assert tasks.score(rev, "3 2 1") and not tasks.score(rev, "32")


def test_unknown_task_message():
    with pytest.raises(tasks.UnknownTaskError, match="choose from"):
        tasks.resolve_tasks(["revrse"])
    assert tasks.resolve_tasks(["all"]) == list(tasks.TASK_NAMES)


def test_tokenizer_roundtrip_and_autotokenizer(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    t2 = AutoTokenizer.from_pretrained(tmp_path)
    for t in (tok, t2):
        assert {t.pad_token, t.eos_token, t.mask_token, t.bos_token} == {"<pad>", "<eos>", "<mask>", "<bos>"}
        ids = chat_prompt_ids(t, "reverse 123")
        assert t.convert_ids_to_tokens(ids) == ["<bos>", "<|user|>", "reverse", "1", "2", "3", "<|assistant|>"]
        assert t.decode(t("12+3=15;#15", add_special_tokens=False)["input_ids"]) == "12+3=15;#15"
    assert (tmp_path / "tokenizer.json").exists()


# ------------------------------------------------------------------ the long-answer suite
LONG = tasks.LONG_TASK_NAMES
LONG_GEN_LEN, LONG_BLOCK_LEN = long_tasks.LONG_GEN_LEN, long_tasks.LONG_BLOCK_LEN


def test_long_suite_is_apart_from_all():
    assert tasks.resolve_tasks(["all"]) == list(tasks.TASK_NAMES)
    assert tasks.resolve_tasks(None) == list(tasks.TASK_NAMES)
    assert tasks.resolve_tasks(["long"]) == list(LONG) and len(LONG) == 5
    assert not set(LONG) & set(tasks.TASK_NAMES)
    assert tasks.resolve_tasks(["arith", "long-count"]) == ["arith", "long-count"]
    with pytest.raises(tasks.UnknownTaskError, match="long-count"):
        tasks.resolve_tasks(["long-cuont"])


@pytest.mark.parametrize("name", LONG)
def test_long_tasks_deterministic_disjoint_and_in_range(name):
    tok = build_tokenizer()
    a = tasks.generate(name, "train", 30, seed=3)
    assert a == tasks.generate(name, "train", 30, seed=3)
    assert a != tasks.generate(name, "train", 30, seed=4)
    test = tasks.test_split(name)
    assert len({e["prompt"] for e in test}) == 200
    assert not {e["prompt"] for e in test} & {e["prompt"] for e in tasks.generate(name, "train", 400)}
    for ex in test:
        assert tasks.score(ex, ex["response"]), ex
        ids = tok(ex["response"], add_special_tokens=False)["input_ids"]
        assert 2 * LONG_BLOCK_LEN < len(ids) < LONG_GEN_LEN, (name, len(ids))  # + the end token: fits the canvas
        assert tok.unk_token_id not in ids + chat_prompt_ids(tok, ex["prompt"])
        assert len(chat_prompt_ids(tok, ex["prompt"])) + LONG_GEN_LEN <= 512  # fits the long teachers' positions
    lens = sorted(len(tok(e["response"], add_special_tokens=False)["input_ids"]) + 1 for e in test)
    assert lens[len(lens) // 2] >= 3 * LONG_BLOCK_LEN  # the median answer spans at least three blocks


def _swap_two(text, sep=","):
    xs = text.split(sep)
    i = next(i for i in range(1, len(xs)) if xs[i] != xs[0])
    xs[0], xs[i] = xs[i], xs[0]
    return sep.join(xs)


@pytest.mark.parametrize("name", [n for n in LONG if not tasks.ALL_TASKS[n].multi_answer])
def test_long_exact_tasks_reject_corruptions(name):
    for ex in tasks.test_split(name, 20):
        r = ex["response"]
        assert tasks.score(ex, " ".join(r))  # whitespace is not scored
        assert not tasks.score(ex, r[:-3])  # one item short
        assert not tasks.score(ex, r + ",1")  # one item too many
        assert not tasks.score(ex, _swap_two(r))  # order matters
        xs = r.split(",")
        assert not tasks.score(ex, ",".join(xs[:5] + [str(int(xs[5]) + 1)] + xs[6:]))  # one item off


def test_long_validity_tasks_accept_every_valid_variant():
    for ex in tasks.test_split("long-either", 20):
        a, b = ex["meta"]["a"], ex["meta"]["b"]
        up = ",".join(str(x) for x in range(a, b + 1))
        down = ",".join(str(x) for x in range(b, a - 1, -1))
        assert tasks.score(ex, up) and tasks.score(ex, down) and ex["response"] in (up, down)
        assert not tasks.score(ex, ",".join(up.split(",")[:-1]))  # one short
        half = up.split(",")[:4] + down.split(",")[4:]
        assert not tasks.score(ex, ",".join(half))  # starts one way, ends the other (what independent unmasking makes)
    for ex in tasks.test_split("long-anystart", 20):
        a, b, s = ex["meta"]["a"], ex["meta"]["b"], ex["meta"]["s"]
        answers = [",".join(str(x) for x in range(start, b + 1, s)) for start in range(a, a + s)]
        assert all(tasks.score(ex, t) for t in answers) and ex["response"] in answers
        assert len({len(t.split(",")) for t in answers}) == 1  # every start gives the same number of items
        assert not tasks.score(ex, ",".join(str(x) for x in range(a + s, b + 1, s)))  # starts a step late
        mixed = answers[0].split(",")[:3] + answers[1].split(",")[3:]
        assert not tasks.score(ex, ",".join(mixed))
