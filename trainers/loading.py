"""Config loading: defaults < YAML file < dotted ``key=value`` overrides, validated up front.

Everything here is pure Python (yaml, dataclasses, difflib): a typo'd key must fail in well
under two seconds, before torch or a model is imported, naming the key and its nearest valid
spellings. Values are parsed by the field's declared type, so ``max_steps=10`` is an int and
``bf16=yes`` a bool, whether they come from the command line or from YAML.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path

import yaml

from accel.trainers.config import ConfigError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
RESERVED_KEYS = ("recipe",)
"""Top-level YAML keys that are not config fields (`recipe:` names whose Config this is)."""


def field_types(cls) -> dict[str, object]:
    """Resolved type of every dataclass field (annotations are strings under PEP 563)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(close) + "?"
    return "valid keys: " + ", ".join(valid)


def parse_value(key: str, value, tp):
    """Coerce `value` (a CLI string or a YAML scalar) to the field type `tp`, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(key, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot parse {value!r}")
    if origin in (list, tuple):
        elem = args[0] if args else str
        if isinstance(value, str):
            s = value.strip()
            if s.startswith("["):
                try:
                    value = yaml.safe_load(s)
                except yaml.YAMLError:
                    raise ConfigError(f"{key}: {value!r} is not a list; write {key}=a,b,c or {key}=[a, b, c]") from None
            else:
                value = [v.strip() for v in s.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({type_name(tp)}), got {value!r}; write {key}=a,b,c")
        out = [parse_value(f"{key}[{i}]", v, elem) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                value = None
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}; write {key}={{a: 1}}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key}: expected a bool (true/false/1/0/yes/no), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an int, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    f = None
                if f is not None and f.is_integer():
                    return int(f)
        raise ConfigError(f"{key}: expected an int, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return value  # merged field by field by _set
    return value


def _set(obj, dotted: str, value, source: str) -> None:
    """Assign `value` to the (possibly nested) field named by `dotted`, parsing it by type."""
    parts = dotted.split(".")
    target, path = obj, []
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(target)]
        full = ".".join(path + [part])
        if part not in names:
            prefix = ".".join(path)
            valid = [f"{prefix}.{n}" if prefix else n for n in names]
            raise ConfigError(f"unknown config key {full!r} ({source}); {_suggest(full, valid)}")
        tp = field_types(type(target))[part]
        path.append(part)
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"config key {full!r} ({source}) is a {type_name(tp)}, not a section; "
                                  f"set it as {full}=VALUE")
            target = getattr(target, part)
            continue
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} ({source}) is a section; set its fields as {full}.NAME=VALUE")
            for k, v in value.items():
                _set(getattr(target, part), str(k), v, source)
            return
        parsed = parse_value(full, value, tp)
        choices = next(f for f in dataclasses.fields(target) if f.name == part).metadata.get("choices")
        if choices and parsed not in choices:
            raise ConfigError(f"{full}={parsed!r} ({source}): choose one of {', '.join(map(str, choices))}")
        setattr(target, part, parsed)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.append((key, v))
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML config file as a dict (empty file -> {}), with one-line errors."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"--config {p}: no such file; pass a YAML file such as recipes/configs/<recipe>/tiny.yaml")
    if p.is_dir():
        raise ConfigError(f"--config {p} is a directory; pass a YAML file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {p} must be a mapping of key: value, got a {type(data).__name__}")
    return data


def load_config(cls, yaml_path: str | Path | None = None, overrides: list[str] | None = None,
                recipe: str | None = None):
    """Build a `cls` config: defaults < YAML < ``key=value`` overrides, then `validate()`.

    `recipe`, when given, must match a YAML's top-level ``recipe:`` (so a learn2pd config is
    not silently loaded into sft). Raises ConfigError naming the bad key and the fix.
    """
    cfg = cls()
    if yaml_path is not None:
        data = read_yaml(yaml_path)
        named = data.pop("recipe", None)
        if recipe is not None and named is not None and named != recipe:
            raise ConfigError(f"--config {yaml_path} is for recipe {named!r}, not {recipe!r}; "
                              f"use `accel train {named}` or a {recipe} config")
        for key, value in _flatten(data):
            _set(cfg, key, value, f"in {yaml_path}")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value; write e.g. max_steps=100")
        key, value = item.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if not key:
            raise ConfigError(f"override {item!r} has no key; write e.g. max_steps=100")
        if key in RESERVED_KEYS:
            raise ConfigError(f"{key!r} cannot be overridden; pick the recipe on the command line")
        _set(cfg, key, value, "command line")
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def describe_fields(cls) -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) for every field, nested sections as dotted names (for --help)."""
    rows = []
    types_ = field_types(cls)
    for f in dataclasses.fields(cls):
        tp = types_[f.name]
        if dataclasses.is_dataclass(tp):
            for n, t, d, h in describe_fields(tp):
                rows.append((f"{f.name}.{n}", t, d, h))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        help_ = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            help_ += f" [{'|'.join(map(str, f.metadata['choices']))}]"
        rows.append((f.name, type_name(tp), repr(default), help_))
    return rows
