"""`AccelLM`: an lm-eval model (registered as "accel") that answers lm-eval's requests with accel's decoders.

`generate_until` requests decode in batches through the same timed call and counting as `accel bench`
(`accel.decoding.timing.decode_batch`), so NFE, tokens per forward and tokens/s mean what they mean
there; the answer is cut at the first of the request's `until` strings, and `max_gen_toks` is rounded
up to the method's block length (a block decoder fills whole blocks). `loglikelihood` is exact for AR
targets (one forward over context + continuation); a dLLM method refuses it (`CannotScoreError`).

From Python, after ``import accel.evaluation.harness``::

    lm_eval.simple_evaluate(model="accel", model_args="target=builtin:dllm,method=fast-dllm", tasks=[...])
"""
from __future__ import annotations

import math

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from accel.data.prompts import encode_prompt
from accel.decoding.plan import Request, decode_method, plan
from accel.decoding.target import DEFAULT_BATCH_SIZE, BUILTIN_GEN_LEN, Target, default_gen_len
from accel.decoding.timing import RowStats, decode_batch, texts
from accel.evaluation.errors import CannotScoreError
from accel.recipes.targets import describe_target, load_target

DEFAULT_MAX_GEN_TOKS = 256
"""lm-eval's own default when a task sets no max_gen_toks."""


def cut_at_stop(text: str, until: list[str]) -> str:
    """`text` up to the first occurrence of any stop string (the earliest one wins)."""
    cut = len(text)
    for s in until or []:
        i = text.find(s) if s else -1
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def rounded_gen_len(max_gen_toks: int, block_len: int | None) -> int:
    """`max_gen_toks` rounded up to a whole number of blocks (unchanged for a decoder without blocks)."""
    return math.ceil(max_gen_toks / block_len) * block_len if block_len else max_gen_toks


def speaks_builtin_world(adapter) -> bool:
    """Whether the model is a built-in-world one (trained on chat-formatted prompts only)."""
    return default_gen_len(adapter) == BUILTIN_GEN_LEN


@register_model("accel")
class AccelLM(LM):
    """One accel decode method on one loaded TARGET, as an lm-eval model.

    model_args (strings from lm-eval's CLI are converted): target (any TARGET `accel bench` takes),
    method (default: the target's first default method), batch_size, block_len, chat (apply the chat
    template to each context; default: on for built-in-world models, which know no other format),
    device, dtype, trust_remote_code, and any method option (threshold=0.8, ...).
    """

    def __init__(self, target: str | Target = "builtin:dllm", method: str | None = None, batch_size=None,
                 block_len=None, chat=None, device: str | None = None, dtype: str | None = None,
                 trust_remote_code=False, max_length=None, **options):
        super().__init__()
        if isinstance(batch_size, str) and batch_size.startswith("auto"):
            batch_size = None
        block = int(block_len) if block_len not in (None, "") else None
        described = target if isinstance(target, Target) else describe_target(str(target))
        p = plan(described, Request(methods=[method] if method else None, block_len=block, options=options),
                 single=True)
        loaded = described if described.adapter is not None else load_target(
            described, _flag(trust_remote_code), device, dtype)
        name, fn, _gen_len = decode_method(p, loaded)
        self.bind(loaded, name, fn, int(batch_size) if batch_size else None, None if chat is None else _flag(chat))

    @classmethod
    def from_method(cls, target: Target, name: str, fn, batch_size: int | None = None,
                    chat: bool | None = None) -> "AccelLM":
        """An AccelLM for a method already chosen on a loaded target (`accel eval`: no reload per method)."""
        lm = cls.__new__(cls)
        LM.__init__(lm)
        lm.bind(target, name, fn, batch_size, chat)
        return lm

    def bind(self, target: Target, name: str, fn, batch_size: int | None, chat: bool | None) -> None:
        self.target, self.method_name, self.fn = target, name, fn
        self.adapter = target.adapter
        self.batch_size = batch_size or target.default_batch_size or DEFAULT_BATCH_SIZE
        self.chat = speaks_builtin_world(self.adapter) if chat is None else chat
        self.stats: dict[str, RowStats] = {}
        """{task: RowStats}: the cost of this method's decodes (and forwards scored), per lm-eval task."""
        self._warm = False

    @property
    def tokenizer_name(self) -> str:
        return str(self.adapter.source).replace("/", "__")

    def encode(self, context: str) -> list[int]:
        """The context's ids: in the chat format when `chat` (as the bench encodes prompts), else plain."""
        tok = self.adapter.tokenizer
        return encode_prompt(tok, context) if self.chat else list(tok(context)["input_ids"])

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str] = [""] * len(requests)
        groups: dict[tuple, list] = {}
        for i, r in enumerate(requests):
            context, kwargs = r.args
            kwargs = dict(kwargs or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            gen_len = rounded_gen_len(int(kwargs.get("max_gen_toks") or DEFAULT_MAX_GEN_TOKS),
                                      getattr(self.fn, "block_len", None))
            groups.setdefault((r.task_name or "", gen_len), []).append((i, self.encode(context), until))
        for (task, gen_len), items in groups.items():
            if not self._warm:  # as the bench: one untimed call first (compilation, allocator)
                self.fn(self.adapter, [ids for _, ids, _ in items[:2]], gen_len)
                self._warm = True
            for k in range(0, len(items), self.batch_size):
                chunk = items[k:k + self.batch_size]
                res, counted = decode_batch(self.method_name, self.fn, self.adapter, [c[1] for c in chunk], gen_len)
                self.stats.setdefault(task, RowStats()).__iadd__(counted)
                for (i, _, until), text in zip(chunk, texts(self.adapter, res)):
                    out[i] = cut_at_stop(text, until)
        return out

    @torch.no_grad()
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Exact log p(continuation | context) and whether greedy decoding would produce it (AR targets)."""
        if self.adapter.kind != "ar":
            task = next((r.task_name for r in requests if r.task_name), "")
            raise CannotScoreError(self.method_name, self.target.spec, task)
        model, tok, out = self.adapter.model, self.adapter.tokenizer, []
        for r in requests:
            context, continuation = r.args
            ctx = self.encode(context) or [self.adapter.eos_ids[0]]
            cont = list(tok(continuation, add_special_tokens=False)["input_ids"])
            ids = torch.tensor([ctx + cont], device=self.adapter.device)
            logits = model(input_ids=ids).logits[0, len(ctx) - 1:-1].float().log_softmax(-1)
            want = torch.tensor(cont, device=logits.device)
            out.append((float(logits.gather(-1, want[:, None]).sum()), bool((logits.argmax(-1) == want).all())))
            s = self.stats.setdefault(r.task_name or "", RowStats())
            s.nfe += 1
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise CannotScoreError(self.method_name, self.target.spec, next((r.task_name for r in requests), ""),
                               "loglikelihood_rolling (not built yet)")


def _flag(value) -> bool:
    """A boolean model_arg: lm-eval's CLI passes strings ('true', 'False', '1')."""
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
