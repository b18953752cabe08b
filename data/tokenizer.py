"""The built-in tokenizer: one token per digit/symbol, one per keyword, chat-style specials.

Built with `tokenizers` and saved as `tokenizer.json`, so `AutoTokenizer.from_pretrained`
loads it like any hub tokenizer. Digits are single tokens so list and arithmetic answers are
digit-aligned (what makes the tiny teachers learnable).
"""
from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, MASK, BOS, UNK = "<pad>", "<eos>", "<mask>", "<bos>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
SPECIALS = [PAD, EOS, MASK, BOS, UNK, USER, ASSISTANT]
SYMBOLS = list("+-=;#:,.?!()*/")
KEYWORDS = ["calc", "copy", "reverse", "sort", "insert", "at", "in", "remove", "from", "replace",
            "with", "shuffle", "pick", "the", "list", "digits", "and", "of", "any", "distinct"]
CHARS = list("abcdefghijklmnopqrstuvwxyz")
VOCAB = SPECIALS + [str(d) for d in range(10)] + SYMBOLS + KEYWORDS + [c for c in CHARS if c not in KEYWORDS]

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer():
    """A PreTrainedTokenizerFast over the fixed vocabulary (deterministic: no training)."""
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token=UNK))
    # words, single digits, single symbols; whitespace dropped
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"[a-z]+|[0-9]|[^a-z0-9]"), behavior="isolated"),
    ])
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, mask_token=MASK,
        unk_token=UNK, additional_special_tokens=[USER, ASSISTANT], padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tokenizer(out_dir: str | Path):
    tok = build_tokenizer()
    tok.save_pretrained(str(out_dir))
    return tok


def chat_prompt_ids(tokenizer, prompt) -> list[int]:
    """Token ids of a user prompt (or a conversation: a list of {"role", "content"} messages ending with
    a user turn) in the chat format, ending where the response starts."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
