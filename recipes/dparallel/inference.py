"""dParallel bench / decode methods from an exported checkpoint.

The baselines (`vanilla`, `fast-dllm`, `entropy-threshold`) run on the *undistilled teacher*
recorded in the checkpoint, and `dparallel` (entropy threshold, the exported threshold) on
the distilled model, so one `accel bench ckpt/dpar` compares the same rule before and after
distillation. `dparallel-prefix` / `dparallel-dual` add the Fast-dLLM KV caches.
"""
from __future__ import annotations

from accel.recipes.dparallel.spec import Spec
from accel.recipes.shared.lora_distill import OnModel, distilled_adapter, load_teacher

DEFAULT_METHODS = ["vanilla", "fast-dllm", "entropy-threshold", "dparallel"]
METHODS = {"vanilla": "the undistilled teacher, one token per step", "fast-dllm": "the undistilled teacher, Fast-dLLM",
           "fast-dllm-prefix": "the undistilled teacher, Fast-dLLM + prefix cache",
           "fast-dllm-dual": "the undistilled teacher, Fast-dLLM + dual cache",
           "entropy-threshold": "the undistilled teacher, the exported entropy threshold",
           "dparallel": "the distilled model, the exported entropy threshold",
           "dparallel-prefix": "dparallel + prefix cache", "dparallel-dual": "dparallel + dual cache"}
"""Every row a checkpoint offers (names checked before the model loads)."""


def _dparallel(adapter, prompts, gen_len, block_len, threshold, cache=None):
    from accel.decoding.dllm import generate_threshold
    return generate_threshold(adapter, prompts, gen_len=gen_len, block_len=block_len, threshold=threshold,
                              rule="entropy", cache=cache)


def bench_methods(ckpt, adapter) -> dict:
    """{name: DecodeMethod}: teacher baselines + the distilled rows."""
    from accel.decoding.methods import DecodeMethod, get_method
    s = ckpt.spec(Spec)
    blk, thr = s.block_len, s.threshold
    student = distilled_adapter(ckpt, adapter, s.format)
    teacher = load_teacher(s.teacher, s.seed, adapter.device,
                           adapter.extra.get("trust_remote_code", False)) if s.format == "merged" else adapter
    out = {}
    for name in ("vanilla", "fast-dllm", "fast-dllm-prefix", "fast-dllm-dual", "entropy-threshold"):
        # the teacher's entropy-threshold row uses the checkpoint's threshold: same rule, same threshold
        m = get_method(name, "dllm", {"block_len": blk, **({"threshold": thr} if name == "entropy-threshold" else {})})
        out[name] = OnModel(m, teacher, blk, f"{m.help} (undistilled teacher)")
    entropy_sweep = out["entropy-threshold"].sweep  # the same knob and values as the teacher's row
    for name, cache in (("dparallel", None), ("dparallel-prefix", "prefix"), ("dparallel-dual", "dual")):
        out[name] = DecodeMethod(name, "dllm", f"distilled model, entropy threshold {thr}"
                                 + (f", {cache} cache" if cache else ""), _dparallel,
                                 options=dict(block_len=blk, threshold=thr, cache=cache), block=blk, model=student,
                                 knob="threshold", sweep=entropy_sweep)
    return out
