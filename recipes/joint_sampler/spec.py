"""What a joint-sampler checkpoint carries: the sampler layer's shape, K tokens per full forward,
the sampling temperature, the block length and the decode defaults.

Written by `export.py` through `save_checkpoint(..., spec=)`, read by `inference.py` with
`ckpt.spec(Spec)`; the config.json keys are the field names, under "decode" and/or
"joint_sampler".
"""
from __future__ import annotations

from dataclasses import dataclass

from accel.decoding.spec import OWN, CheckpointSpec, SpecError, spec_field


@dataclass(frozen=True, kw_only=True)
class Spec(CheckpointSpec):
    SECTION = "joint_sampler"

    method: str = spec_field("joint-sampler", where=("decode",), help="decode default row")
    layer: dict = spec_field(help="the sampler layer's config (SamplerLayer(layer, token_input))")
    token_input: str = spec_field("add", help="how the sampled tokens enter the sampler layer")
    k: int = spec_field(where=("decode", OWN), settable=True, help="tokens per full dLLM forward")
    temperature: float = spec_field(where=("decode", OWN), settable=True, help="sampling temperature (0: greedy)")
    block_len: int = spec_field(where=(OWN, "decode"), help="semi-AR block length")
    max_k: int = spec_field(help="the largest K the sampler was trained for")
    top_m: int = spec_field(4, help="candidates per position when enumerating the true joint (TV/KL rows)")
    data: dict | None = spec_field(None, help="the trajectories the sampler learnt from")
    gen_len: int = spec_field(64, where=("decode",), settable=True, help="decode default generation length")

    def validate(self) -> None:
        if not 1 <= self.k <= 8:
            raise SpecError(f"k={self.k}: tokens per full forward must be in 1..8")
        if self.temperature < 0:
            raise SpecError(f"temperature={self.temperature}: must be >= 0")
        super().validate()
