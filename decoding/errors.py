"""What can be wrong with a bench or decode request, as facts: the setting, its value, the constraint.

The library raises these; `accel.cli.options.worded` turns them into one line naming the flag
(``--gen-len``), so the decoding layer never needs to know how the command line spells a setting.
Each also reads as a plain sentence for library callers (``str(e)``), in parameter names.
"""
from __future__ import annotations

from accel.core.errors import UserError


class BenchError(UserError, ValueError):
    """Bad bench or decode input (target, lengths, output path); the message says the fix."""


class SettingError(BenchError):
    """A count setting (``limit``, ``batch_size``, ``gen_len``, ``block_len``) below its minimum."""

    def __init__(self, setting: str, value: int, minimum: int = 1):
        self.setting, self.value, self.minimum = setting, value, minimum
        super().__init__(f"{setting} must be >= {minimum} (got {value})")


class GenLenError(BenchError):
    """``gen_len`` is not a multiple of a block length: a method's (``method``) or, before its
    weights load, a checkpoint's (``owner``: e.g. ``learn2pd checkpoint``)."""

    def __init__(self, gen_len: int, block_len: int, method: str | None = None, owner: str | None = None):
        self.gen_len, self.block_len, self.method, self.owner = gen_len, block_len, method, owner
        whose = f"the {owner}'s block length" if owner else "the block length"
        super().__init__(f"gen_len {gen_len} is not a multiple of {whose} {block_len}"
                         + (f" (method {method})" if method else ""))

    @property
    def lower(self) -> int:
        """The nearest multiple of the block length at or below gen_len (at least one block)."""
        return max(self.block_len, self.gen_len // self.block_len * self.block_len)


class OutputPathError(BenchError):
    """An output file (``setting``: json, plot) that cannot be written; ``problem`` says why, as the
    rest of a sentence about the path ("is a directory; ...")."""

    def __init__(self, setting: str, path, problem: str):
        self.setting, self.path, self.problem = setting, path, problem
        super().__init__(f"{setting} {path} {problem}")


class PromptSetTargetError(BenchError):
    """A real prompt set is scored against greedy decoding, which needs an AR target."""

    def __init__(self, prompts: str, spec: str, kind: str):
        self.prompts, self.spec, self.kind = prompts, spec, kind
        super().__init__(f"prompt set {prompts}: real prompt sets are scored against greedy decoding, which "
                         f"needs an AR target ({spec} is a {kind})")
