"""Prompts a tokenizer cannot represent: the built-in teachers speak only the task suite's small
vocabulary, so free text ("What is the capital of France?") becomes <unk> tokens and decodes to an
empty or meaningless answer. Finding the unknown words lets the CLI say so in one line."""
from __future__ import annotations


def unknown_words(tokenizer, text: str) -> list[str]:
    """The distinct words of `text` that contain a token the tokenizer maps to its unknown token."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return []
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = [(a, b) for i, (a, b) in zip(enc["input_ids"], enc["offset_mapping"]) if i == unk]
    except (NotImplementedError, TypeError, ValueError, KeyError):  # slow tokenizers have no offsets
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ["?"] * (unk in ids)
    words: list[str] = []
    for a, b in spans:
        lo = text.rfind(" ", 0, a) + 1
        hi = text.find(" ", b)
        w = text[lo:hi if hi >= 0 else len(text)].strip()
        if w and w not in words:
            words.append(w)
    return words


def unknown_warning(tokenizer, text: str, target: str) -> str | None:
    """One line for stderr when `text` holds words the target's tokenizer does not know, else None."""
    words = unknown_words(tokenizer, text)
    if not words:
        return None
    shown = ", ".join(repr(w) for w in words[:5]) + (f" and {len(words) - 5} more" if len(words) > 5 else "")
    hint = (" (the built-in teachers know only the task suite's words, e.g. --prompt 'reverse 31415' or "
            "'calc 12+3-4')" if str(target).startswith("builtin:") or len(tokenizer) < 1000 else "")
    return f"warning: {target}'s tokenizer does not know {shown}{hint}; expect an empty or meaningless answer"
