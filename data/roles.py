"""ShareGPT speaker names -> chat-template roles, in one table: the prompt readers (first user turn),
the ShareGPT source and Medusa's conversation examples must agree on who is speaking."""
from __future__ import annotations

CHAT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
              "chatgpt": "assistant", "bard": "assistant", "model": "assistant", "system": "system"}
"""{ShareGPT ``from`` / OpenAI ``role`` value (lower case): the chat role it plays}."""


def chat_role(turn: dict) -> str | None:
    """The chat role of a ShareGPT ({from, value}) or OpenAI-style ({role, content}) turn; None if unknown."""
    return CHAT_ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
