"""Decode methods: the one type (`DecodeMethod`) and the baselines accelerators are compared against.

A `DecodeMethod` is what `accel bench` / `accel decode` run, for baselines and recipes alike:
callable as ``m(adapter, prompts, gen_len) -> DecodeResult`` with its options bound, plus the
backbone kind it decodes, a one-line help, the block length the generation length must be a
multiple of, optionally a fixed model to decode with (a recipe's undistilled teacher), and
optional untimed row metrics. Baseline options can be overridden per run (``--opt
threshold=0.8``); only keys the method declares are accepted, so a typo is an error rather
than a silently ignored setting.

Samplers are imported when a method is *called*, not when this module is imported: the CLI
reads names and help from here without importing torch.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Callable

from accel.core.errors import UserError


class MethodError(UserError, ValueError):
    """A bad method name or option; the message lists the valid ones."""


class UnknownMethodError(MethodError):
    """A method name the target does not offer: ``name``, the ``target`` and the ``valid`` names."""

    def __init__(self, name: str, target: str, valid: list[str], hint: str = ""):
        self.name, self.target, self.valid = name, target, list(valid)
        super().__init__(f"unknown method {name!r} for {target}{hint}; choose from: {', '.join(valid)}")


class OptionValueError(MethodError):
    """A method option given a value it cannot take: ``key``, ``value`` and the ``problem``."""

    def __init__(self, key: str, value, problem: str):
        self.key, self.value, self.problem = key, value, problem
        super().__init__(f"option {key}={value}: {problem}")


class UnusedOptionError(MethodError):
    """A method option (``key``) that none of the selected methods (``methods``) declares."""

    def __init__(self, key: str, methods: list[str]):
        self.key, self.methods = key, list(methods)
        super().__init__(f"option {key}: no selected method has this option (methods: {', '.join(methods)})")


@dataclass(frozen=True)
class DecodeMethod:
    """A named decode method with bound options; call it as m(adapter, prompts, gen_len)."""
    name: str
    kind: str
    """'dllm' or 'ar': the backbone kind it decodes."""
    help: str
    run: Callable
    """run(adapter, prompts, gen_len, **options) -> DecodeResult"""
    options: dict = field(default_factory=dict)
    block: int | None = None
    """Block length gen_len must be a multiple of, when not an option (None: options['block_len'])."""
    model: object = None
    """An adapter to decode with instead of the one the bench passes (e.g. the undistilled teacher)."""
    row_metrics: Callable | None = None
    """row_metrics(adapter, prompts, gen_len) -> {metric: [one value per prompt]}: extra report columns,
    computed by the bench outside the timed decode (e.g. the joint sampler's TV distance)."""
    timed: bool = True
    """False for decoders that read the reference answer (an oracle): no tokens/s or speedup."""
    needs_cache: bool | None = None
    """Whether `run` decodes with a KV cache when that is not an option (None: options['cache'])."""
    knob: str | None = None
    """The option that trades accuracy for parallelism (threshold, tau, ...), swept by `accel bench --sweep`."""
    sweep: tuple = ()
    """The knob's values `--sweep` decodes with, from the most careful to the most parallel (the AUP curve)."""

    def at(self, value) -> "DecodeMethod":
        """This method with its knob set to `value` (named ``name@knob=value``), for a sweep point.

        The point has no row metrics: they are bound to the method's own setting (the joint
        sampler's TV is measured at its own K), and the AUP curve needs only accuracy and NFE."""
        if not self.knob:
            raise MethodError(f"method {self.name!r} has no knob to sweep")
        return dataclasses.replace(self, name=f"{self.name}@{self.knob}={value:g}",
                                   options={**self.options, self.knob: value}, row_metrics=None)

    def __call__(self, adapter, prompts, gen_len, stop=None):
        """Decodes `prompts`; `stop` (`accel.decoding.stop.StopStrings`) ends rows early where the method's
        loop checks it (`stops`), else it is ignored (the caller cuts the answers as before)."""
        extra = {"stop": stop} if stop is not None and self.stops else {}
        return self.run(self.model if self.model is not None else adapter, prompts, gen_len, **self.options, **extra)

    @property
    def stops(self) -> bool:
        """Whether `run` takes stop strings (a `stop` parameter): AR greedy and the tree methods do."""
        try:
            return "stop" in inspect.signature(self.run).parameters
        except (TypeError, ValueError):
            return False

    @property
    def uses_cache(self) -> bool:
        """Whether it decodes with a KV cache (a backbone whose code has none cannot run it)."""
        return bool(self.options.get("cache")) if self.needs_cache is None else self.needs_cache

    @property
    def block_len(self) -> int | None:
        """Block length the generation length must be a multiple of (None: no constraint)."""
        return self.block or self.options.get("block_len")

    def metrics(self, adapter, prompts, gen_len) -> dict:
        """The row metrics of one batch ({} when the method has none)."""
        if self.row_metrics is None:
            return {}
        return self.row_metrics(self.model if self.model is not None else adapter, prompts, gen_len) or {}


Method = DecodeMethod
"""The former name of `DecodeMethod`."""


def _vanilla(adapter, prompts, gen_len, block_len=32, steps=None, temperature=0.0, seed=0):
    from accel.decoding.dllm import generate_vanilla
    return generate_vanilla(adapter, prompts, gen_len=gen_len, block_len=block_len, steps=steps,
                            temperature=temperature, generator=_generator(adapter, temperature, seed))


def _threshold(adapter, prompts, gen_len, block_len=32, threshold=0.9, rule="confidence", factor=None,
               cache=None, temperature=0.0, seed=0, max_steps=None):
    from accel.decoding import dllm
    if not hasattr(dllm, "generate_threshold"):
        raise MethodError("threshold decoding (fast-dllm, entropy-threshold) is not built in this version of accel; "
                          "use the vanilla method")
    return dllm.generate_threshold(adapter, prompts, gen_len=gen_len, block_len=block_len, threshold=threshold,
                                   rule=rule, factor=factor, cache=cache, temperature=temperature,
                                   generator=_generator(adapter, temperature, seed), max_steps=max_steps)


def _ar(adapter, prompts, gen_len, temperature=0.0, top_p=1.0, seed=0, stop=None):
    from accel.decoding.ar import generate_greedy
    return generate_greedy(adapter, prompts, max_new_tokens=gen_len, temperature=temperature, top_p=top_p,
                           generator=_generator(adapter, temperature, seed), stop=stop)


def _generator(adapter, temperature, seed):
    """A fresh seeded generator per call: a sampled run is reproducible regardless of warm-up calls."""
    if not temperature:
        return None
    import torch
    return torch.Generator(device=adapter.device).manual_seed(int(seed))


_T = dict(block_len=32, threshold=0.9, rule="confidence", factor=None, cache=None, temperature=0.0, seed=0,
          max_steps=None)
_SPECS: dict[str, tuple[str, str, Callable, dict]] = {
    "vanilla": ("dllm", "LLaDA low-confidence sampler, one token per step, block 32 (the slow reference)",
                _vanilla, dict(block_len=32, steps=None, temperature=0.0, seed=0)),
    "fast-dllm": ("dllm", "Fast-dLLM: unmask every token with confidence >= 0.9 per step, no cache",
                  _threshold, dict(_T)),
    "fast-dllm-prefix": ("dllm", "Fast-dLLM threshold 0.9 with a prefix KV cache (recomputes from the block on)",
                         _threshold, dict(_T, cache="prefix")),
    "fast-dllm-dual": ("dllm", "Fast-dLLM threshold 0.9 with a dual (prefix + suffix) KV cache",
                       _threshold, dict(_T, cache="dual")),
    "fast-dllm-factor": ("dllm", "Fast-dLLM factor rule (f=1.0): largest n with n-th confidence >= 1 - f/(n+1)",
                         _threshold, dict(_T, factor=1.0)),
    "entropy-threshold": ("dllm", "dParallel's rule: unmask the lowest-entropy token plus all with entropy < 0.5",
                          _threshold, dict(_T, rule="entropy", threshold=0.5)),
    "greedy": ("ar", "greedy AR decoding with the model's KV cache (the AR reference)", _ar,
               dict(temperature=0.0, top_p=1.0, seed=0)),
    "sample": ("ar", "AR sampling at temperature 0.7 (seeded, reproducible)", _ar,
               dict(temperature=0.7, top_p=1.0, seed=0)),
}

CONFIDENCE_SWEEP = (0.99, 0.95, 0.9, 0.8, 0.7, 0.5)
"""Fast-dLLM confidence thresholds, careful to parallel (the paper's 0.9 in the middle)."""
_KNOBS: dict[str, tuple[str, tuple]] = {
    **{n: ("threshold", CONFIDENCE_SWEEP) for n in ("fast-dllm", "fast-dllm-prefix", "fast-dllm-dual")},
    "fast-dllm-factor": ("factor", (0.25, 0.5, 1.0, 2.0, 4.0)),
    "entropy-threshold": ("threshold", (0.1, 0.25, 0.5, 1.0, 1.5, 2.0)),  # nats: higher unmasks more
}
"""Each baseline's accuracy-vs-parallelism knob and its sweep (vanilla and AR decoding have none:
one point each)."""

DEFAULT_METHODS = {
    "dllm": ["vanilla", "fast-dllm", "fast-dllm-prefix", "fast-dllm-dual", "entropy-threshold"],
    "ar": ["greedy"],
}
"""Bench rows when no --method is given; the first is the baseline speedups are relative to."""


def uses_cache(fn) -> bool:
    """Whether a method (a `Method`, a recipe's bound method or a partial with a cache= keyword)
    needs the backbone's KV cache."""
    if hasattr(fn, "uses_cache"):
        return bool(fn.uses_cache)
    return bool((getattr(fn, "keywords", None) or {}).get("cache"))


def available(kind: str) -> list[str]:
    """Names of the baseline methods for a backbone kind ('dllm' or 'ar')."""
    return [n for n, s in _SPECS.items() if s[0] == kind]


def describe(kind: str | None = None) -> dict[str, str]:
    """{name: one-line help} (all kinds when kind is None): for --help texts."""
    return {n: f"[{s[0]}] {s[1]}" for n, s in _SPECS.items() if kind in (None, s[0])}


def get_method(name: str, kind: str, options: dict | None = None) -> DecodeMethod:
    """The baseline method `name` for a `kind` backbone, with `options` overriding its defaults."""
    spec = _SPECS.get(name)
    if spec is None or spec[0] != kind:
        hint = f" ({name!r} is a method for {spec[0]} models)" if spec else ""
        raise MethodError(f"unknown method {name!r} for a {kind} model{hint}; "
                          f"choose from: {', '.join(available(kind))}")
    k, help_, run, defaults = spec
    knob, sweep = _KNOBS.get(name, (None, ()))
    opts = dict(defaults)
    for key, value in (options or {}).items():
        if key not in defaults:
            raise MethodError(f"method {name!r} has no option {key!r}; its options are: {', '.join(defaults)}")
        opts[key] = coerce_option(name, key, value, defaults[key])
    return DecodeMethod(name=name, kind=k, help=help_, run=run, options=opts, knob=knob, sweep=sweep)


def coerce_option(method: str, key: str, value, default):
    """Converts an option string (``--opt``) to the type of the option's default ('none' clears optional ones)."""
    if not isinstance(value, str):
        return value
    if value.lower() in ("none", "null", ""):
        if default is None or key == "cache":
            return None
        raise OptionValueError(key, "none", f"option {key!r} of {method!r} needs a value")
    try:
        if isinstance(default, bool):
            return value.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float) or key in ("factor",):
            return float(value)
        if default is None and key in ("steps", "max_steps"):
            return int(value)
    except ValueError:
        raise OptionValueError(key, value, f"{key!r} of {method!r} must be a number") from None
    if key == "cache" and value not in ("prefix", "dual"):
        raise OptionValueError(key, value, "choose prefix, dual or none")
    if key == "rule" and value not in ("confidence", "entropy"):
        raise OptionValueError(key, value, "choose confidence or entropy")
    return value
