"""A bench or decode request, checked once, before any model loads, and completed after.

`Request` holds what was asked (methods, tasks, lengths, options) and checks the numbers and task
names when it is made. `plan` runs the checks that need the target described but not loaded
(method names and options, the prompt set, gen_len against the known block lengths) and keeps
what it chose; `bound_methods` / `decode_method` finish the choice once the targets have loaded,
checking only what loading revealed (a recipe's own blocks, the default gen_len). So `accel bench`,
`accel decode` and a library call of `run_bench` check each thing exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from accel.data.tasks import resolve_tasks
from accel.decoding.errors import PromptSetTargetError, SettingError
from accel.decoding.prompt_sets import load_prompt_set
from accel.decoding.target import (Target, bind_methods, check_checkpoint_gen_len, check_gen_len, gen_len_of,
                                   select_methods)


@dataclass
class Request:
    """What a bench or decode was asked for; the numbers and task names are checked here."""
    methods: list[str] | None = None
    tasks: list[str] | None = None
    limit: int | None = None
    gen_len: int | None = None
    block_len: int | None = None
    batch_size: int | None = None
    options: dict = field(default_factory=dict)
    sweep: bool = False
    prompts: str | None = None
    """A real prompt set (`accel.decoding.prompt_sets`) instead of the task suite."""
    prompt_sets: dict[str, list[dict]] | None = None
    """{name: examples} decoded instead of the suite's test split."""

    def __post_init__(self):
        for setting in ("limit", "batch_size", "gen_len", "block_len"):
            value = getattr(self, setting)
            if value is not None and value < 1:
                raise SettingError(setting, value)
        if self.tasks and not (self.prompt_sets or self.prompts):
            resolve_tasks(self.tasks)  # a typo fails before the model loads


@dataclass
class Plan:
    """A request checked against its (described or loaded) targets: the methods chosen on each."""
    request: Request
    target: Target
    compare: list[Target]
    chosen: dict
    compare_chosen: list[dict]
    defaulted: bool
    """Whether the main target's methods are its defaults (no method was named)."""
    prompt_sets: dict[str, list[dict]] | None = None
    checked: set = field(default_factory=set)
    """(gen_len, block) pairs already checked (`check_gen_len`)."""


def plan(target: Target, request: Request, compare: list[Target] = (), single: bool = False) -> Plan:
    """The checks of `request` that need `target` (and the `compare` targets) described but not loaded.

    single: one method is decoded (`accel decode`): the first named, else the checkpoint's exported
    method, else the target's first default.
    """
    prompt_sets = request.prompt_sets
    if request.prompts:
        if target.kind != "ar":
            raise PromptSetTargetError(request.prompts, target.spec, target.kind)
        prompt_sets = load_prompt_set(request.prompts, request.limit)
    if request.gen_len is not None and request.block_len is None:
        check_checkpoint_gen_len(target, request.gen_len)
    names, defaulted = request.methods, not request.methods
    if single:
        first = target.decode_defaults.get("method")
        defaulted = not (names or first)
        names = [(names or [first or target.default_methods[0]])[0]]
    chosen = select_methods(target, names, request.options, request.block_len)
    compare_chosen = [select_methods(c, None, None, request.block_len) for c in compare]
    p = Plan(request, target, list(compare), chosen, compare_chosen, defaulted, prompt_sets)
    if request.gen_len is not None:
        for methods in (chosen, *compare_chosen):
            check_gen_len(request.gen_len, methods, p.checked)
    return p


def bound_methods(p: Plan, main: Target, others: list[Target]) -> tuple[dict, list[dict]]:
    """The chosen methods of the loaded `main` and `others` (the plan's targets, loaded)."""
    def bind(described, loaded, chosen, defaulted):
        if described.adapter is not None:  # chosen on the loaded target already
            return chosen
        return bind_methods(loaded, chosen, p.request.block_len, defaulted)
    return (bind(p.target, main, p.chosen, p.defaulted),
            [bind(d, o, c, True) for d, o, c in zip(p.compare, others, p.compare_chosen)])


def decode_method(p: Plan, main: Target) -> tuple[str, object, int]:
    """(name, method, gen_len) of a single-method plan on the loaded `main`."""
    methods, _ = bound_methods(p, main, [])
    if not methods:  # the default was a cached method this backbone cannot run: its first default instead
        methods = select_methods(main, main.default_methods[:1], p.request.options, p.request.block_len)
    name, fn = next(iter(methods.items()))
    gen_len = gen_len_of(main, p.request.gen_len)
    check_gen_len(gen_len, {name: fn}, p.checked)
    return name, fn, gen_len
