"""Checkpoint specs: the typed values an inference checkpoint carries, declared once per recipe.

A recipe declares ``recipes/<name>/spec.py: Spec(CheckpointSpec)`` — block length, τ, thresholds,
heads, tree, gen_len … with types and defaults. Its exporter builds one from the run and passes it
to `accel.decoding.checkpoint.save_checkpoint(..., spec=...)`, which writes every field under the
config.json keys the field names (`where`); `InferenceCheckpoint.spec(Spec)` reads them back, typed
and checked, so no recipe parses its own dict. Fields marked ``settable`` are what `accel export
--set key=value` may override (`Recipe.option_types`). Cheap to import (no torch): recipe packages
import their spec at CLI start-up. docs/architecture.md, "The checkpoint spec".
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from typing import ClassVar

from accel.core.errors import UserError

OWN = "recipe"
"""In a field's `where`: the spec's own section (``Spec.SECTION``, e.g. "learn2pd")."""


def spec_field(default=MISSING, *, where: tuple[str, ...] = (OWN,), settable: bool = False, omit_none: bool = False,
               help: str = ""):
    """A spec field. `where`: the "accel" sub-sections that hold it, read in this order and all written
    (``"decode"`` for the decode defaults, `OWN` for the recipe's section); `settable`: `--set` may
    override it at export; `omit_none`: a None value is not written (keys older checkpoints only have
    sometimes). A field without a default must be in the checkpoint."""
    meta = {"where": tuple(where), "settable": settable, "omit_none": omit_none, "help": help}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class SpecError(UserError, ValueError):
    """A field value the spec refuses; the checkpoint code adds the file and the fix."""


@dataclass(frozen=True, kw_only=True)
class CheckpointSpec:
    """Base of every recipe's spec. Subclasses set SECTION and declare fields with `spec_field`;
    `method` and `gen_len` (when declared) are the decode defaults `accel decode`/`bench` use."""

    SECTION: ClassVar[str] = ""

    def validate(self) -> None:
        """Range checks beyond the types; raise SpecError(message). Runs on write and on read.
        Subclasses extend it and call super().validate(), which checks the decode default gen_len."""
        gen_len = getattr(self, "gen_len", None)
        if gen_len is not None and gen_len < 1:
            raise SpecError(f"gen_len={gen_len} must be >= 1")

    # ---------------------------------------------------------------- the generic machinery
    @classmethod
    def types(cls) -> dict[str, object]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def settable(cls) -> dict[str, object]:
        """{field: type} `accel export --set` may override."""
        types = cls.types()
        return {f.name: types[f.name] for f in dataclasses.fields(cls) if f.metadata.get("settable")}

    def sections(self) -> dict[str, dict]:
        """{section: {key: value}} as written into config.json's "accel" section (field order kept)."""
        out: dict[str, dict] = {}
        for f in dataclasses.fields(self):
            if f.metadata.get("omit_none") and getattr(self, f.name) is None:
                continue
            for where in f.metadata.get("where", (OWN,)):
                out.setdefault(self.SECTION if where == OWN else where, {})[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def check_options(cls, overrides: dict, recipe: str) -> None:
        """SpecError on an export option that is not a settable field."""
        allowed = cls.settable()
        for k in overrides:
            if k not in allowed:
                raise SpecError(f"{recipe} export has no option {k!r}; its options are: {', '.join(allowed)}")

    def with_overrides(self, overrides: dict, recipe: str):
        """A copy with `overrides` (None: keep) applied and validated; unknown keys raise SpecError."""
        type(self).check_options(overrides, recipe)
        allowed = type(self).settable()
        given = {k: v for k, v in overrides.items() if v is not None}
        out = dataclasses.replace(self, **{k: check_type(k, v, allowed[k]) for k, v in given.items()})
        out.validate()
        return out

    @classmethod
    def from_sections(cls, accel: dict):
        """The spec read from an "accel" section; SpecError names the missing/ill-typed field."""
        types, values = cls.types(), {}
        for f in dataclasses.fields(cls):
            wheres = [cls.SECTION if w == OWN else w for w in f.metadata.get("where", (OWN,))]
            for w in wheres:
                section = accel.get(w)
                if isinstance(section, dict) and f.name in section:
                    values[f.name] = check_type(f"{w}.{f.name}", section[f.name], types[f.name])
                    break
            else:
                if f.default is MISSING and f.default_factory is MISSING:
                    if not isinstance(accel.get(wheres[0]), dict):
                        raise SpecError(f"has no {wheres[0]!r} section")
                    raise SpecError(f"has no {wheres[0]}.{f.name}")
        spec = cls(**values)
        spec.validate()
        return spec


@dataclass(frozen=True, kw_only=True)
class TreeDraftSpec(CheckpointSpec):
    """The decode defaults of a draft verified as a tree on an AR model (Medusa, Hydra, EAGLE-3), first
    in their config.json "decode" section; a subclass restates `method` with its own default row."""

    method: str = spec_field(where=("decode",), help="decode default row")
    acceptance: str = spec_field("greedy", where=("decode",), help="tree acceptance rule of the default row")
    gen_len: int = spec_field(64, where=("decode",), settable=True, help="decode default generation length")


def check_type(key: str, value, tp):
    """`value` as type `tp` (int/float/bool/str/dict/list, `X | None`, anything else unchecked), or SpecError.
    Strict like JSON: a bool is not an int, an int is a float."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is not type(None):
                try:
                    return check_type(key, value, a)
                except SpecError:
                    pass
        raise SpecError(f"{key} is {value!r}, expected {tp}")
    base = origin or tp
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str),
          dict: lambda v: isinstance(v, dict), list: lambda v: isinstance(v, (list, tuple)),
          tuple: lambda v: isinstance(v, (list, tuple))}.get(base)
    if ok is None:
        return value
    if not ok(value):
        raise SpecError(f"{key} is {value!r}, expected {getattr(base, '__name__', base)}")
    if base is float:
        return float(value)
    return list(value) if base is list else value
