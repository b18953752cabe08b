"""Reading the config.json of a directory the user named (a model, an accel checkpoint).

Each caller says in its own words what the directory should have been; the checks (it exists,
is a directory, holds config.json, the JSON parses) are the same, so they are written once.
"""
from __future__ import annotations

import json
from pathlib import Path


def read_config(path, error: type[Exception], *, absent: str, not_dir: str, missing: str,
                invalid: str) -> tuple[Path, Path, object]:
    """(directory, its config.json, the parsed JSON), or `error` with one of the messages: format
    strings over ``{p}`` (the directory), ``{f}`` (the file) and, in `invalid`, ``{e}`` (the parse error)."""
    p = Path(path).expanduser()
    f = p / "config.json"
    if not p.exists():
        raise error(absent.format(p=p, f=f))
    if not p.is_dir():
        raise error(not_dir.format(p=p, f=f))
    if not f.exists():
        raise error(missing.format(p=p, f=f))
    try:
        return p, f, json.loads(f.read_text())
    except ValueError as e:
        raise error(invalid.format(p=p, f=f, e=e)) from None
