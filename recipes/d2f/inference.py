"""D2F bench / decode methods from an exported checkpoint.

The baselines (`vanilla`, `fast-dllm`, ...) run on the *undistilled teacher* recorded in the
checkpoint (block 32, their reference setting); `d2f` runs pipelined decoding with the exact
block KV cache on the distilled model with the exported block size and thresholds, and
`d2f-nocache` the same rule without the cache (identical tokens at temperature 0, more compute).
"""
from __future__ import annotations

import functools

from accel.recipes.shared.lora_distill import OnModel, distilled_adapter, load_teacher

DEFAULT_METHODS = ["vanilla", "fast-dllm", "d2f"]
METHODS = {"vanilla": "the undistilled teacher, one token per step", "fast-dllm": "the undistilled teacher, Fast-dLLM",
           "fast-dllm-prefix": "the undistilled teacher, Fast-dLLM + prefix cache",
           "fast-dllm-dual": "the undistilled teacher, Fast-dLLM + dual cache",
           "d2f": "the distilled model, pipelined decoding with the exact block KV cache",
           "d2f-nocache": "d2f without the cache (same tokens at temperature 0)"}
"""Every row a checkpoint offers (names checked before the model loads)."""


def _d2f(adapter, prompts, gen_len, block_len, tau_add, tau_act, tau_conf, cache=True):
    from accel.recipes.d2f.decode import generate_d2f
    return generate_d2f(adapter, prompts, gen_len=gen_len, block_len=block_len, tau_add=tau_add, tau_act=tau_act,
                        tau_conf=tau_conf, cache=cache)


def bench_methods(ckpt, adapter) -> dict:
    """{name: DecodeMethod}: teacher baselines + the distilled rows."""
    from accel.decoding.methods import get_method
    from accel.recipes.d2f.spec import TAUS, Spec
    s = ckpt.spec(Spec)
    blk = s.block_len
    taus = {k: getattr(s, k) for k in TAUS}
    student = distilled_adapter(ckpt, adapter, s.format)
    teacher = load_teacher(s.teacher, s.seed, adapter.device,
                           adapter.extra.get("trust_remote_code", False)) if s.format == "merged" else adapter
    out = {}
    for name in ("vanilla", "fast-dllm", "fast-dllm-prefix", "fast-dllm-dual"):
        m = get_method(name, "dllm")
        out[name] = OnModel(m, teacher, m.block_len, f"{m.help} (undistilled teacher)")
    desc = ", ".join(f"{k} {v}" for k, v in taus.items())
    for name, cache in (("d2f", True), ("d2f-nocache", False)):
        # a backbone without a KV cache (LLaDA) runs `d2f` uncached: the same tokens, more compute
        cache = cache and student.supports_cache
        fn = functools.partial(_d2f, block_len=blk, cache=cache, **taus)
        out[name] = OnModel(fn, student, blk, f"D2F pipelined decoding, block {blk}, {desc}"
                                              + (", exact block KV cache" if cache else ", no cache"),
                            uses_cache=False)
    return out
