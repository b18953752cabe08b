"""The rows a bench decodes: (name, method, target) runs, with --compare targets merged in (a decode
another target would repeat is left out) and each swept method's knob points added after it."""
from __future__ import annotations


def merge_compare(runs: list[tuple], other, methods: dict) -> list[tuple]:
    """`runs` plus `other`'s methods as more rows, renamed ``<target>/<method>`` only on a name clash."""
    runs = list(runs)
    taken = {r[0]: r for r in runs}
    for n, fn in methods.items():
        if n in taken and same_run(taken[n], fn, other):
            continue  # e.g. two checkpoints of one base: their greedy rows would be the same decode twice
        runs.append((f"{other.spec}/{n}" if n in taken else n, fn, other))
    return runs


def same_run(run: tuple, fn, target) -> bool:
    """Whether `fn` on `target` decodes exactly as the run (name, fn, target) already listed: the same
    method function and options, no model of its own, on a backbone loaded from the same source."""
    _name, have, have_target = run

    def key(m):
        return getattr(m, "run", None), getattr(m, "options", None), getattr(m, "model", None)
    return (key(fn)[0] is not None and key(fn)[2] is None and key(fn) == key(have)
            and str(target.adapter.source) == str(have_target.adapter.source))


def sweep_runs(runs: list[tuple]) -> list[tuple]:
    """Each (name, method, target) followed by one run per value of the method's sweep (its own
    default value is not repeated: that point is the method's row)."""
    out = []
    for name, fn, tgt in runs:
        out.append((name, fn, tgt))
        knob = getattr(fn, "knob", None)
        for v in getattr(fn, "sweep", ()) if knob else ():
            if v != fn.options.get(knob):
                point = fn.at(v)
                out.append((f"{name}@{knob}={v:g}", point, tgt))
    return out


def knob_info(name: str, fn) -> dict:
    """The method entry's knob fields: which method a sweep point belongs to and its knob value."""
    knob = getattr(fn, "knob", None)
    if not knob:
        return {}
    base = name.split("@", 1)[0]
    return {"sweep_of": base, "knob": knob, "value": fn.options.get(knob)}


def method_help(fn) -> str:
    """A MethodFn's one-line help: its `help` attribute, else its (wrapped) function's docstring."""
    if getattr(fn, "help", None):
        return fn.help
    inner = getattr(fn, "func", fn)  # functools.partial: the partial's own doc is generic
    return ((getattr(inner, "__doc__", None) or "").strip().splitlines() or [""])[0]
