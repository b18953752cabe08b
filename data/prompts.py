"""Turning a user prompt into the token ids a model is decoded from.

One function for every caller (bench, decode, data generators, recipes), so a prompt is
encoded the same way at training time and at benchmark time.
"""
from __future__ import annotations


def encode_prompt(tokenizer, text: str) -> list[int]:
    """User text in the model's chat format (plain encoding when it has no chat template)."""
    if getattr(tokenizer, "chat_template", None):
        from accel.data.tokenizer import chat_prompt_ids
        ids = chat_prompt_ids(tokenizer, text)
        return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    return list(tokenizer(text)["input_ids"])
