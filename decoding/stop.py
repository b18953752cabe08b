"""Stop strings that end an AR row's decoding early (lm-eval's `until`).

A `generate_until` request names strings its answer is cut at (HumanEval's ``"\\nclass"``, ``"\\ndef"``,
...). Cutting after `max_gen_toks` tokens is correct but pays for every token past the cut: on HumanEval at
512 tokens most of a decode is code the scorer throws away. Decoding loops that take a `StopStrings` end a
row at the token that completes its first stop string instead, so the answer, once cut, is the same text
either way, and every lossless method ends at the same token as greedy (a tree step that accepted tokens
past the stop keeps only those up to it: the rows stay comparable token for token).

Detection decodes only a row's tail (the newest tokens plus as many before them as the longest stop string
has characters), so a check costs a tokenizer call on a few dozen ids, not the whole answer. Decoding a tail
can drop a leading space or split a multi-byte character at its start; neither can make a stop string
appear, so a miss only means decoding goes on, and the answer's own cut (`cut_at_stop`) still applies.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopStrings:
    """Per row of a batch, the strings that end that row: ``rows[b]`` (empty: decode to the length)."""
    tokenizer: object
    rows: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, tokenizer, per_row) -> "StopStrings | None":
        """From one list of strings per row; None when no row has any (the loops then skip every check)."""
        rows = tuple(tuple(s for s in (r or []) if s) for r in per_row)
        return cls(tokenizer, rows) if any(rows) else None

    def first(self, b: int, row: list[int], start: int) -> int | None:
        """The length of the shortest prefix of `row` (longer than `start`, the length before this step's
        tokens) whose text contains one of row b's stop strings, or None."""
        stops = self.rows[b] if b < len(self.rows) else ()
        if not stops:
            return None
        back = max(len(s) for s in stops)
        decode = self.tokenizer.decode
        if not any(s in decode(row[max(0, start - back):]) for s in stops):
            return None
        for n in range(start + 1, len(row) + 1):  # the step's tokens one by one: where the stop completes
            if any(s in decode(row[max(0, n - 1 - back):n]) for s in stops):
                return n
        return None
