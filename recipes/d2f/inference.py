"""D2F bench / decode methods from an exported checkpoint.

The baselines (`vanilla`, `fast-dllm`, ...) run on the *undistilled teacher* recorded in the
checkpoint (block 32, their reference setting); `d2f` runs pipelined decoding with the exact
block KV cache on the distilled model with the exported block size and thresholds, and
`d2f-nocache` the same rule without the cache (identical tokens at temperature 0, more compute).

Both D2F rows sweep `tau_conf` under `accel bench --sweep`: the confidence a token needs to be
unmasked in an active block is the knob D2F itself trades quality for parallelism with (the
paper's per-task settings move it; tau_add / tau_act shape the pipeline, not the bar).
"""
from __future__ import annotations

from accel.recipes.d2f.spec import TAUS, Spec
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


def tau_conf_sweep(tau_conf: float) -> tuple[float, ...]:
    """tau_conf values for `--sweep`, careful to parallel: Fast-dLLM's confidence grid (tau_conf is the
    same kind of bar) plus the exported value."""
    from accel.decoding.methods import CONFIDENCE_SWEEP
    return tuple(sorted({*CONFIDENCE_SWEEP, round(tau_conf, 6)}, reverse=True))


def bench_methods(ckpt, adapter) -> dict:
    """{name: DecodeMethod}: teacher baselines + the distilled rows."""
    from accel.decoding.methods import DecodeMethod, get_method
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
        # a model whose cached forward did not pass the load self-check (a config accel's LLaDA forward does not
        # compute, `llada_forward.unsupported`) runs `d2f` uncached: the same tokens, more compute
        cache = cache and student.supports_cache
        help_ = f"D2F pipelined decoding, block {blk}, {desc}" + (", exact block KV cache" if cache else ", no cache")
        fn = DecodeMethod(name, "dllm", help_, _d2f, options=dict(block_len=blk, cache=cache, **taus), block=blk,
                          knob="tau_conf", sweep=tau_conf_sweep(taus["tau_conf"]))
        out[name] = OnModel(fn, student, blk, help_, uses_cache=False)
    return out
