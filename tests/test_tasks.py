import pytest

from accel.data import tasks
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
