"""dParallel bench / decode methods from an exported checkpoint.

The baselines (`vanilla`, `fast-dllm`, `entropy-threshold`) run on the *undistilled teacher*
recorded in the checkpoint, and `dparallel` (entropy threshold, the exported threshold) on
the distilled model, so one `accel bench ckpt/dpar` compares the same rule before and after
distillation. `dparallel-prefix` / `dparallel-dual` add the Fast-dLLM KV caches.
"""
from __future__ import annotations

import functools

DEFAULT_METHODS = ["vanilla", "fast-dllm", "entropy-threshold", "dparallel"]


class OnModel:
    """A MethodFn bound to a fixed adapter: the bench passes the checkpoint's adapter, but a
    baseline must decode with the teacher (and a method with the distilled model)."""

    def __init__(self, fn, adapter, block_len: int, help: str = "", uses_cache: bool | None = None):
        self.fn, self.adapter, self.block_len, self.help = fn, adapter, block_len, help
        if uses_cache is None:
            from accel.decoding.methods import uses_cache as needs_cache
            uses_cache = needs_cache(fn)
        self.uses_cache = uses_cache

    def __call__(self, _adapter, prompts, gen_len):
        return self.fn(self.adapter, prompts, gen_len)


def load_teacher(section: dict, device, trust_remote_code: bool = False):
    """The undistilled backbone (random:dllm is rebuilt from its seed, as in training).

    trust_remote_code: the flag the checkpoint itself was loaded with (the teacher of a LLaDA or
    Dream checkpoint runs the same shipped code)."""
    from types import SimpleNamespace

    from accel.recipes.sft.train import load_model
    adapter = load_model(SimpleNamespace(backbone=section["teacher"], seed=int(section.get("seed", 0)),
                                         trust_remote_code=trust_remote_code))
    adapter.model.to(device).eval()
    return adapter


def distilled_adapter(ckpt, adapter):
    """The distilled model: the checkpoint's own model (merged) or the teacher + its adapters."""
    import copy
    import dataclasses
    if ckpt.accel["dparallel"].get("format", "merged") == "merged":
        return adapter
    from accel.trainers.lora import load_adapter, merge_lora
    base = copy.deepcopy(adapter.model)
    model = merge_lora(load_adapter(base, ckpt.path)).eval()
    return dataclasses.replace(adapter, model=model, source=str(ckpt.path))


def _dparallel(adapter, prompts, gen_len, block_len, threshold, cache=None):
    from accel.decoding.dllm import generate_threshold
    return generate_threshold(adapter, prompts, gen_len=gen_len, block_len=block_len, threshold=threshold,
                              rule="entropy", cache=cache)


def bench_methods(ckpt, adapter) -> dict:
    """{name: fn(adapter, prompts, gen_len) -> DecodeResult}: teacher baselines + the distilled rows."""
    from accel.decoding.checkpoint import CheckpointError
    from accel.decoding.methods import get_method
    s = ckpt.accel.get("dparallel")
    if not s:
        raise CheckpointError(f"{ckpt.path} has no \"dparallel\" section; re-export it with `accel export RUN --out DIR`")
    blk, thr = int(s["block_len"]), float(s["threshold"])
    fmt = s.get("format", "merged")
    student = distilled_adapter(ckpt, adapter)
    teacher = load_teacher(s, adapter.device, adapter.extra.get("trust_remote_code", False)) if fmt == "merged" else adapter
    out = {}
    for name in ("vanilla", "fast-dllm", "fast-dllm-prefix", "fast-dllm-dual", "entropy-threshold"):
        # the teacher's entropy-threshold row uses the checkpoint's threshold: same rule, same threshold
        m = get_method(name, "dllm", {"block_len": blk, **({"threshold": thr} if name == "entropy-threshold" else {})})
        out[name] = OnModel(m, teacher, blk, f"{m.help} (undistilled teacher)")
    for name, cache in (("dparallel", None), ("dparallel-prefix", "prefix"), ("dparallel-dual", "dual")):
        fn = functools.partial(_dparallel, block_len=blk, threshold=thr, cache=cache)
        out[name] = OnModel(fn, student, blk, f"distilled model, entropy threshold {thr}"
                                                 + (f", {cache} cache" if cache else ""))
    return out
