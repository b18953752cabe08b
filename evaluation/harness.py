"""`AccelLM`: an lm-eval model (registered as "accel") that answers lm-eval's requests with accel's decoders.

`generate_until` requests decode in batches through the same timed call and counting as `accel bench`
(`accel.decoding.timing.decode_batch`), so NFE, tokens per forward and tokens/s mean what they mean
there; the answer is cut at the first of the request's `until` strings (AR greedy and the tree methods stop
decoding a row at the token that completes one, `accel.decoding.stop`: the same answer, fewer forwards), and
`max_gen_toks` is rounded up to the method's block length (a block decoder fills whole blocks). `loglikelihood` is exact for AR
targets and LLaDA's Monte Carlo ELBO estimate for dLLMs (`accel.evaluation.loglik`), scored with the model
the method decodes with; a method that cannot score refuses it (`CannotScoreError`).

From Python, after ``import accel.evaluation.harness``::

    lm_eval.simple_evaluate(model="accel", model_args="target=builtin:dllm,method=fast-dllm", tasks=[...])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from accel.data.prompts import encode_prompt
from accel.decoding.methods import OptionValueError
from accel.decoding.plan import Request, decode_method, plan
from accel.decoding.stop import StopStrings
from accel.decoding.target import DEFAULT_BATCH_SIZE, BUILTIN_GEN_LEN, Target, default_gen_len, gen_len_of
from accel.decoding.timing import RowStats, decode_batch, texts, warm_up
from accel.evaluation.errors import CannotScoreError
from accel.evaluation.loglik import (MC_BATCH, MC_SAMPLES, MC_SEED, ar_loglikelihood, cannot_score, dllm_elbo,
                                     dllm_greedy)
from accel.recipes.targets import describe_target, load_target

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
    device, dtype, trust_remote_code, the dLLM loglikelihood estimate's mc_samples (128), mc_batch (32),
    mc_seed (1234) and greedy_check (true: also report whether greedy decoding gives the continuation),
    and any method option (threshold=0.8, ...).
    """

    def __init__(self, target: str | Target = "builtin:dllm", method: str | None = None, batch_size=None,
                 block_len=None, chat=None, device: str | None = None, dtype: str | None = None,
                 trust_remote_code=False, max_length=None, mc_samples=MC_SAMPLES, mc_batch=MC_BATCH,
                 mc_seed=MC_SEED, greedy_check=True, **options):
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
        self.bind(loaded, name, fn, int(batch_size) if batch_size else None, None if chat is None else _flag(chat),
                  Scoring(int(mc_samples), int(mc_batch), int(mc_seed), _flag(greedy_check)))

    @classmethod
    def from_method(cls, target: Target, name: str, fn, batch_size: int | None = None,
                    chat: bool | None = None, scoring: "Scoring | None" = None,
                    scores: dict | None = None) -> "AccelLM":
        """An AccelLM for a method already chosen on a loaded target (`accel eval`: no reload per method).
        `scores`: a dict shared by the run's methods, so methods decoding with the same model score each
        loglikelihood request once (the estimate is seeded: every method would get the same numbers)."""
        lm = cls.__new__(cls)
        LM.__init__(lm)
        lm.bind(target, name, fn, batch_size, chat, scoring, scores)
        return lm

    def bind(self, target: Target, name: str, fn, batch_size: int | None, chat: bool | None,
             scoring: "Scoring | None" = None, scores: dict | None = None) -> None:
        self.target, self.method_name, self.fn = target, name, fn
        self.scoring = scoring or Scoring()
        self.scores = {} if scores is None else scores
        """{(model, context ids, continuation ids, scoring): (loglikelihood, greedy, forwards)}."""
        self.scoring.check()
        self.adapter = target.adapter
        self.batch_size = batch_size or target.default_batch_size or DEFAULT_BATCH_SIZE
        self.chat = speaks_builtin_world(self.adapter) if chat is None else chat
        self.max_gen_toks = gen_len_of(target)
        """The answer length for a task whose generation_kwargs name none (as lm-eval's HF model has its own):
        `accel bench`'s default gen_len (a checkpoint's exported one, else 64 on built-in-world models and 256,
        lm-eval's default, on real ones)."""
        self.stats: dict[str, RowStats] = {}
        """{task: RowStats}: the cost of this method's decodes (and forwards scored), per lm-eval task."""
        self.outputs: dict[str, list[tuple[tuple, list[int]]]] = {}
        """{task: [((context ids, gen_len, until), generated ids)]}: what each generate_until request decoded
        (rows end at their stop strings), in request order (`accel.evaluation.run` compares lossless AR methods with greedy decoding on them)."""
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
            gen_len = rounded_gen_len(int(kwargs.get("max_gen_toks") or self.max_gen_toks),
                                      getattr(self.fn, "block_len", None))
            groups.setdefault((r.task_name or "", gen_len), []).append((i, self.encode(context), until))
        for (task, gen_len), items in groups.items():
            if not self._warm:  # as the bench: one untimed call first (compilation, allocator)
                warm_up(self.fn, self.adapter, [ids for _, ids, _ in items[:2]], gen_len,
                        StopStrings.of(self.adapter.tokenizer, [until for _, _, until in items[:2]]))
                self._warm = True
            for k in range(0, len(items), self.batch_size):
                chunk = items[k:k + self.batch_size]
                stop = StopStrings.of(self.adapter.tokenizer, [c[2] for c in chunk])
                res, counted = decode_batch(self.method_name, self.fn, self.adapter, [c[1] for c in chunk], gen_len,
                                            stop=stop)
                self.stats.setdefault(task, RowStats()).__iadd__(counted)
                for (i, ids, until), text, row in zip(chunk, texts(self.adapter, res), res.tokens):
                    out[i] = cut_at_stop(text, until)
                    self.outputs.setdefault(task, []).append(((tuple(ids), gen_len, tuple(until)), list(row)))
        return out

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) of a loglikelihood request. In the chat format the context is the
        user turn and the continuation the reply's first tokens; plain, as lm-eval and LLaDA's harness
        encode it: trailing spaces of the context move to the continuation, and the continuation's ids are
        what encoding the whole adds after the context's."""
        tok = self.adapter.tokenizer
        if self.chat:
            ctx, cont = self.encode(context), list(tok(continuation, add_special_tokens=False)["input_ids"])
        else:
            n = len(context) - len(context.rstrip())
            if n:
                context, continuation = context[:-n], context[-n:] + continuation
            whole = list(tok(context + continuation)["input_ids"])
            ctx = list(tok(context)["input_ids"])
            cont = whole[len(ctx):]
        return ctx or [self.adapter.eos_ids[0]], cont

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """log p(continuation | context) and whether greedy decoding produces it: exact on AR models, the
        Monte Carlo ELBO estimate on dLLMs (`accel.evaluation.loglik`), with the model the method decodes with."""
        task = next((r.task_name for r in requests if r.task_name), "")
        why = cannot_score(self.target, self.method_name)
        if why:
            raise CannotScoreError(self.method_name, self.target.spec, task, "loglikelihood", why)
        model = getattr(self.fn, "model", None) or self.adapter
        sc, out = self.scoring, []
        for r in requests:
            ctx, cont = self.encode_pair(*r.args)
            if not cont:  # log p of nothing
                out.append((0.0, True))
                continue
            key = (id(model), tuple(ctx), tuple(cont), sc if model.kind != "ar" else None)
            if key not in self.scores:
                if model.kind == "ar":
                    self.scores[key] = ar_loglikelihood(model, ctx, cont)
                else:
                    ll, forwards = dllm_elbo(model, ctx, cont, sc.samples, sc.batch, sc.seed)
                    greedy, more = dllm_greedy(model, ctx, cont) if sc.greedy_check else (False, 0)
                    self.scores[key] = (ll, greedy, forwards + more)
            ll, greedy, forwards = self.scores[key]
            s = self.stats.setdefault(r.task_name or "", RowStats())
            s.nfe += forwards  # per document: lm-eval's documents, not requests, make the row's n
            out.append((ll, greedy))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise CannotScoreError(self.method_name, self.target.spec, next((r.task_name for r in requests), ""),
                               "loglikelihood_rolling", "perplexity scoring is not built; use a generate_until "
                               "or multiple-choice task")


@dataclass(frozen=True)
class Scoring:
    """How a dLLM scores loglikelihood requests (`accel.evaluation.loglik.dllm_elbo`)."""
    samples: int = MC_SAMPLES
    """Monte Carlo samples per request (LLaDA's mc_num)."""
    batch: int = MC_BATCH
    """Samples per forward."""
    seed: int = MC_SEED
    """Every request's masks are drawn from a generator seeded with this."""
    greedy_check: bool = True
    """Also decode the continuation greedily (one token per forward) to say whether it is the greedy one."""

    def check(self) -> None:
        for name in ("samples", "batch"):
            if getattr(self, name) < 1:
                raise OptionValueError(f"mc_{name}", getattr(self, name), "must be at least 1")


def _flag(value) -> bool:
    """A boolean model_arg: lm-eval's CLI passes strings ('true', 'False', '1')."""
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
