"""Learn2PD bench / decode methods from an exported checkpoint.

`oracle` is the extremely-greedy-parallel decoder: it needs the reference (vanilla) decode
first, and its reported NFE counts only the greedy pass — the lower bound the filter approaches,
not a usable decoder. It stops a row at its end token (early exit) like the threshold rows.
"""
from __future__ import annotations

from accel.recipes.learn2pd.spec import Spec

DEFAULT_METHODS = ["vanilla", "fast-dllm", "learn2pd", "learn2pd+eotp", "oracle"]
METHODS = {
    "learn2pd": "learned unmask filter: unmask the tokens it accepts (plus the top-1), no end-of-text prediction",
    "learn2pd+eotp": "learned filter + End-of-Text Prediction: stop at a decoded end token",
    "learn2pd+eotp-prefix": "learn2pd+eotp with a prefix KV cache",
    "learn2pd+eotp-dual": "learn2pd+eotp with a dual (prefix + suffix) KV cache",
    "oracle": "extremely greedy parallel: unmask every token that already matches the reference (reads the "
              "answer: a lower bound on NFE, not a decoder)",
}
"""The checkpoint's own methods (the baselines come from `accel.decoding.methods`)."""


def load_filter(ckpt):
    """(UnmaskFilter with the checkpoint's weights, its typed `Spec`)."""
    from accel.decoding.checkpoint import CheckpointError
    from accel.recipes.learn2pd.model import UnmaskFilter
    s = ckpt.spec(Spec)
    filt = UnmaskFilter(s.block_len, s.hidden_size)
    try:
        filt.load_state_dict(ckpt.tensors())
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt.path}: filter weights do not match its config ({str(e).splitlines()[0]}); "
                              "re-export the checkpoint") from None
    return filt.eval(), s


def _l2p(adapter, prompts, gen_len, filt, tau, eotp, cache=None):
    from accel.recipes.learn2pd.decode import generate_learn2pd
    filt = filt.to(adapter.device)
    return generate_learn2pd(adapter, prompts, gen_len, filt, tau=tau, eotp=eotp, cache=cache)


def _oracle(adapter, prompts, gen_len, block_len):
    from accel.recipes.learn2pd.oracle import oracle_decode
    return oracle_decode(adapter, prompts, gen_len, block_len, early_exit=True)


def tau_sweep(tau: float) -> tuple[float, ...]:
    """Filter thresholds for `accel bench --sweep`: the shipped tau between stricter and looser ones
    (tau thresholds sigmoid(filter logit), so the values stay inside (0, 1))."""
    grid = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
    return tuple(sorted({*grid, round(tau, 6)}, reverse=True))


def bench_methods(ckpt, adapter) -> dict:
    """{name: DecodeMethod}: the baselines plus Learn2PD's rows."""
    from accel.decoding.methods import DecodeMethod, get_method
    filt, s = load_filter(ckpt)
    blk, tau = s.block_len, s.tau
    out = {name: get_method(name, "dllm", {"block_len": blk}) for name in ("vanilla", "fast-dllm")}
    for name, eotp, cache in [("learn2pd", False, None), ("learn2pd+eotp", True, None),
                              ("learn2pd+eotp-prefix", True, "prefix"), ("learn2pd+eotp-dual", True, "dual")]:
        out[name] = DecodeMethod(name, "dllm", METHODS[name] + f" (tau {tau})", _l2p, block=blk,
                                 options=dict(filt=filt, tau=tau, eotp=eotp, cache=cache), knob="tau",
                                 sweep=tau_sweep(tau))
    out["oracle"] = DecodeMethod("oracle", "dllm", METHODS["oracle"], _oracle, options={"block_len": blk}, timed=False)
    return out
