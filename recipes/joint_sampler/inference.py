"""Joint-sampler bench / decode methods from an exported checkpoint.

Rows (all at the checkpoint's temperature, default 1.0: the joint is a sampling property):
``sequential`` (K=1: one token per full forward, the exact joint; the baseline), ``marginal``
(K tokens per forward drawn independently) and ``joint-sampler`` (K tokens per forward: one
forward + K-1 sampler passes). ``marginal`` and ``joint-sampler`` carry a ``tv`` (and ``kl``)
row metric: distance to the enumerated true K-token joint at each bench prompt's span (the
trajectory's state with K masks left in its block; `evaluate.py`), computed outside the timed decode (the bench's ``row_metrics`` hook). ``joint-tv`` is the
joint-sampler row with both distances side by side (tv, tv_marginal, kl, kl_marginal,
coverage); ``-k8`` rows repeat the comparison at K=8.

``marginal`` and ``joint-sampler`` sweep K under `accel bench --sweep`: tokens per full forward
is the one thing the method trades quality for speed with (it has no threshold). Sweep points
carry no TV/KL: those enumerate the true K-token joint, which at K=8 costs top_m^7 forwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from accel.recipes.joint_sampler.spec import Spec

DEFAULT_METHODS = ["sequential", "marginal", "joint-sampler"]
METHODS = {"sequential": "one token per full forward (K=1): the exact joint, the baseline",
           "marginal": "K tokens per full forward, drawn independently from the marginals (+ tv, kl)",
           "joint-sampler": "K tokens per full forward: 1 forward + K-1 sampler passes (+ tv, kl)",
           "joint-tv": "joint sampler with exact TV/KL of sampler and marginals to the true joint",
           "marginal-k8": "K=8, independent marginals", "joint-sampler-k8": "K=8: 1 forward + 7 sampler passes"}
"""Every row a checkpoint offers (names checked before the model loads)."""


def load_sampler(ckpt, device="cpu"):
    """(SamplerLayer with the checkpoint's weights, its typed `Spec`)."""
    from accel.decoding.checkpoint import CheckpointError
    from accel.recipes.joint_sampler.layer import SamplerLayer
    s = ckpt.spec(Spec)
    layer = SamplerLayer(s.layer, s.token_input)
    try:
        missing, unexpected = layer.load_state_dict(ckpt.tensors(), strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt.path}: sampler weights do not match its config ({str(e).splitlines()[0]}); "
                              "re-export the checkpoint") from None
    missing = [m for m in missing if not m.startswith("rotary.")]
    if missing or unexpected:
        raise CheckpointError(f"{ckpt.path}: sampler weights do not match its config (missing {missing[:2]}, "
                              f"unexpected {unexpected[:2]}); re-export the checkpoint")
    return layer.to(device).eval(), s


@dataclass
class JointMethod:
    """The runner of a joint-sampler DecodeMethod: decoding, and its TV/KL row metrics."""
    name: str
    help: str
    k: int
    mode: str
    sampler: object
    block_len: int
    temperature: float
    seed: int = 0
    metrics: tuple = ()
    """Row metrics to compute (untimed) per prompt: names from evaluate.joint_metrics."""
    top_m: int = 4
    cache: dict = field(default_factory=dict)

    def __call__(self, adapter, prompts, gen_len, k=None):
        import torch

        from accel.recipes.joint_sampler.decode import generate_joint
        gen = torch.Generator(device=adapter.device).manual_seed(self.seed) if self.temperature > 0 else None
        sampler = self.sampler.to(adapter.device) if self.sampler is not None else None
        k = self.k if k is None else int(k)  # the DecodeMethod's option: a --sweep point's K
        return generate_joint(adapter, prompts, gen_len, self.block_len, k=k, sampler=sampler, mode=self.mode,
                              temperature=self.temperature, generator=gen)

    def row_metrics(self, adapter, prompts, gen_len) -> dict:
        """{metric: [per prompt]}: TV / KL to the true K-token joint (bench calls this outside timing)."""
        if not self.metrics or self.k < 2:
            return {}
        from accel.recipes.joint_sampler.evaluate import joint_metrics
        t = self.temperature if self.temperature > 0 else 1.0
        sampler = self.sampler.to(adapter.device) if self.mode == "joint" else None
        per = joint_metrics(adapter, sampler, prompts, gen_len, self.block_len, k=self.k, top_m=self.top_m,
                            temperature=t, cache=self.cache)
        return {m: per[m] for m in self.metrics}


K_SWEEP = (1, 2, 3, 4, 6, 8)
"""K values of `--sweep`, careful (K=1: the exact joint) to parallel."""


def k_sweep(mode: str, max_k: int) -> tuple[int, ...]:
    """The K sweep of a row: the joint sampler stops at the K it was trained for (its layer never
    saw more passes); the marginals have no such limit."""
    return tuple(k for k in K_SWEEP if mode == "marginal" or k <= max_k)


def bench_methods(ckpt, adapter) -> dict:
    """{name: MethodFn}: sequential (K=1), marginal and joint-sampler at the checkpoint's K, joint-tv, K=8 rows."""
    sampler, s = load_sampler(ckpt, adapter.device)
    k, T, blk, top_m = s.k, s.temperature, s.block_len, s.top_m
    cache: dict = {}  # the true joint per prompt, shared by every row

    from accel.decoding.methods import DecodeMethod

    def m(name, help_, k_, mode, metrics=(), knob=False):
        # K=8 enumerates 2 tokens per node (2^7 leaves) instead of top_m^7: same cost order as K=4
        jm = JointMethod(name, help_, k_, mode, sampler if mode == "joint" else None, blk, T, metrics=metrics,
                         top_m=top_m if k_ <= 4 else 2, cache=cache)
        return DecodeMethod(name, "dllm", help_, jm, block=blk, options={"k": k_},
                            row_metrics=jm.row_metrics if metrics and k_ >= 2 else None,
                            knob="k" if knob else None, sweep=k_sweep(mode, s.max_k) if knob else ())

    return {
        "sequential": m("sequential", "one token per full forward (K=1): the exact joint, the baseline", 1, "marginal"),
        "marginal": m("marginal", f"K={k} tokens per full forward, drawn independently from the marginals",
                      k, "marginal", ("tv", "kl"), knob=True),
        "joint-sampler": m("joint-sampler", f"K={k} tokens per full forward: 1 forward + {k - 1} sampler passes",
                           k, "joint", ("tv", "kl"), knob=True),
        "joint-tv": m("joint-tv", f"joint sampler at K={k} with exact TV/KL of sampler and marginals to the true joint",
                      k, "joint", ("tv", "tv_marginal", "kl", "kl_marginal", "coverage")),
        "marginal-k8": m("marginal-k8", "K=8 tokens per forward, independent marginals", 8, "marginal", ("tv", "kl")),
        "joint-sampler-k8": m("joint-sampler-k8", "K=8: 1 forward + 7 sampler passes", 8, "joint", ("tv", "kl")),
    }
