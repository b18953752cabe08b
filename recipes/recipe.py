"""The recipe interface: one typed object per recipe, listed in `accel.recipes.RECIPES`.

A recipe package ``accel.recipes.<name>`` exports ``RECIPE = Recipe(...)`` from its
``__init__.py``. Importing it must stay cheap (no torch): the CLI builds every recipe's
``--help`` from ``Config`` at start-up, so ``train``, the exporters and ``bench_methods`` import
the heavy modules only when they are called. docs/architecture.md walks through adding one.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from accel.core.errors import UserError
from accel.trainers.config import ConfigError


@dataclass(frozen=True)
class Recipe:
    name: str
    """User-facing name, spelled with '-' (`accel train joint-sampler`); '_' is accepted on input."""
    group: str
    """CLI group: 'train' or 'distill'."""
    summary: str
    """One line for `accel train --help` and the docs."""
    Config: type
    """A `accel.trainers.config.TrainConfig` subclass: every setting, with help and validation."""
    train: Callable[[object], Path]
    """train(cfg) -> the run directory (resumable: the same output_dir continues the run)."""
    exporters: dict[str, Callable[..., Path]] = field(default_factory=dict)
    """{format: export(run_dir, out_dir, **options) -> checkpoint dir}; the first is the default."""
    Spec: type | None = None
    """Its checkpoint spec (an `accel.decoding.spec.CheckpointSpec` subclass, in recipes/<name>/spec.py):
    the typed values its checkpoints carry; its ``settable`` fields are the export options."""
    export_options: dict[str, type] = field(default_factory=dict)
    """{option: type} for a recipe without a Spec; with one, `option_types` derives them from it."""
    kind: str = "dllm"
    """The backbone kind its checkpoints decode: 'dllm' or 'ar' (their baselines' kind)."""
    trains_on: tuple[str, ...] = ()
    """The backbone kinds `train` accepts when they are not just `kind` (SFT: both); see `backbone_kinds`."""
    data_commands: tuple = ()
    """The `accel data` commands that build its training data (`accel.recipes.data_commands.DataCommand`);
    one several recipes read is listed by each and registered once."""
    config_dir: Path | None = None
    """Where its shipped YAML configs are (`--config NAME` finds NAME.yaml there); None: none shipped."""
    bench_methods: Callable[..., dict] | None = None
    """bench_methods(ckpt, adapter) -> {name: DecodeMethod}: what `accel bench CKPT` can run."""
    methods: dict[str, str] = field(default_factory=dict)
    """{name: help} of the checkpoint's own methods, known without loading anything: `--method`
    is checked against these and the baselines of `kind` before a model loads."""
    default_methods: tuple[str, ...] = ()
    """Bench rows when no --method is given; the first is the baseline speedups are relative to."""
    default_batch_size: int = 0
    """Bench batch size when --batch-size is not given (0: the bench's default)."""
    docs: str = ""
    """The method note under docs/ (e.g. docs/recipes/learn2pd.md)."""

    @property
    def option_types(self) -> dict[str, type]:
        """{option: type} an exporter accepts to override the run's decode settings (`accel export
        --set tau=0.9`); checked and converted like config keys before the exporter runs."""
        if self.Spec is not None:
            return dict(self.Spec.settable())
        return dict(self.export_options)

    @property
    def backbone_kinds(self) -> tuple[str, ...]:
        """The backbone kinds it trains on: `trains_on`, else its checkpoints' `kind`."""
        return self.trains_on or (self.kind,)

    def config_names(self) -> list[str]:
        """The names of its shipped configs (`accel train NAME --config long`)."""
        d = self.config_dir
        return sorted(p.stem for p in d.glob("*.yaml")) if d is not None and d.is_dir() else []

    def resolve_config(self, config) -> Path | None:
        """A --config value as a file: an existing path as given, else the shipped config of that name
        (``long`` or ``long.yaml``); a ConfigError in one line listing the shipped names otherwise."""
        if config is None:
            return None
        path = Path(config).expanduser()
        if path.is_file():
            return path
        name = path.name[:-5] if path.name.endswith(".yaml") else path.name
        if self.config_dir is not None and path.parent == Path(".") and (self.config_dir / f"{name}.yaml").is_file():
            return self.config_dir / f"{name}.yaml"
        names = self.config_names()
        shipped = f"{self.name}'s configs: {', '.join(names)}" if names else f"{self.name} ships no configs"
        raise ConfigError(f"--config {config}: no such file or {self.name} config; {shipped}")

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(self.exporters)

    def export(self, run_dir, out_dir, format: str | None = None, **options) -> Path:
        """Export a finished run with the exporter of `format` (default: the recipe's first)."""
        if not self.exporters:
            raise UserError(f"recipe {self.name!r} has no exporter: its runs are used as they are")
        fmt = format or self.formats[0]
        if fmt not in self.exporters:
            raise UserError(f"--format {fmt}: {self.name} exports as {' or '.join(self.formats)}")
        return self.exporters[fmt](run_dir, out_dir, **self.parse_export_options(options))

    def parse_export_options(self, options: dict) -> dict:
        """Options checked against `option_types` (unknown key: a suggestion; bad value: its type)."""
        from accel.trainers.loading import _suggest, parse_value
        types, out = self.option_types, {}
        for key, value in options.items():
            if key not in types:
                valid = list(types)
                raise ConfigError(f"--set {key}: {self.name} export has no option {key!r}; "
                                  + (_suggest(key, valid) if valid else "it takes no options"))
            out[key] = parse_value(key, value, types[key])
        return out


def lazy(target: str, **bound) -> Callable:
    """A callable for ``"package.module:function"`` that imports the module on first call.

    Recipe packages use it so that listing recipes (the CLI's help) never imports torch;
    `bound` keyword arguments are passed on every call (e.g. an exporter's ``format``).
    """
    module, _, attr = target.partition(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), attr)(*args, **{**bound, **kwargs})

    call.__name__ = attr
    call.__qualname__ = f"lazy({target})"
    call.__doc__ = f"{target} (imported when called)"
    return call


def packaged(package: str, *, name: str, group: str, summary: str, formats: tuple[str, ...] = ("accel",),
             kind: str = "dllm", data_commands: tuple = (), trains_on: tuple[str, ...] = ()) -> Recipe:
    """The `Recipe` of a package laid out the usual way, so each ``__init__.py`` states only what is its own.

    The layout (docs/architecture.md, "Adding a recipe"): ``<package>.config.Config``,
    ``<package>.spec.Spec``, ``<package>.inference`` (``METHODS``, ``DEFAULT_METHODS``, optional
    ``DEFAULT_BATCH_SIZE``, ``bench_methods``), ``<package>.train:run``, ``<package>.export:export``
    (called with ``format=`` one of `formats`, the first the default), ``docs/recipes/<name>.md`` and
    the YAML configs in ``<package>/configs/`` (a recipe in its own folder) or ``recipes/configs/<name>/``.
    Only config, spec and inference are imported here (they stay torch-free); the rest is `lazy`.
    """
    inference = importlib.import_module(f"{package}.inference")
    here = Path(importlib.import_module(package).__file__).parent
    return Recipe(
        name=name, group=group, summary=summary,
        Config=importlib.import_module(f"{package}.config").Config, train=lazy(f"{package}.train:run"),
        exporters={f: lazy(f"{package}.export:export", format=f) for f in formats},
        Spec=importlib.import_module(f"{package}.spec").Spec,
        bench_methods=lazy(f"{package}.inference:bench_methods"), default_methods=tuple(inference.DEFAULT_METHODS),
        kind=kind, methods=dict(inference.METHODS),
        default_batch_size=getattr(inference, "DEFAULT_BATCH_SIZE", 0),
        docs=f"docs/recipes/{name}.md", data_commands=tuple(data_commands), trains_on=tuple(trains_on),
        config_dir=shipped_configs(name, here),
    )


def shipped_configs(name: str, package_dir: Path) -> Path:
    """A recipe's config folder: its own ``configs/`` if it has one, else ``recipes/configs/<name>/``
    (package data of the wheel, like the recipes themselves)."""
    own = package_dir / "configs"
    return own if own.is_dir() else Path(__file__).parent / "configs" / name
