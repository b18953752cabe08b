"""What a D2F checkpoint carries: the block size, the three pipeline thresholds (τ_add, τ_act,
τ_conf), the export format and the undistilled teacher the baseline rows run on.

Written by `export.py` through `save_distilled(..., spec=)`, read by `inference.py` with
`ckpt.spec(Spec)`; the config.json keys are the field names, under "decode" and/or "d2f"
(next to the run's provenance: LoRA shape, noise ratios, steps, trajectories).
"""
from __future__ import annotations

from dataclasses import dataclass

from accel.decoding.spec import OWN, CheckpointSpec, SpecError, spec_field

BOTH = (OWN, "decode")
TAUS = ("tau_add", "tau_act", "tau_conf")


@dataclass(frozen=True, kw_only=True)
class Spec(CheckpointSpec):
    SECTION = "d2f"

    method: str = spec_field("d2f", where=("decode",), help="decode default row")
    teacher: str = spec_field(help="the undistilled backbone the baseline rows decode with")
    seed: int = spec_field(0, help="rebuilds a random:dllm teacher as in training")
    block_len: int = spec_field(where=BOTH, help="block size of the block-causal pipeline")
    tau_add: float = spec_field(where=BOTH, settable=True, help="add the next block when the last is this complete")
    tau_act: float = spec_field(where=BOTH, settable=True, help="a new block becomes fully active at this completion")
    tau_conf: float = spec_field(where=BOTH, settable=True, help="unmask tokens at least this confident")
    gen_len: int = spec_field(256, where=("decode",), settable=True, help="decode default generation length")
    cache: bool = spec_field(True, where=("decode",), help="decode with the exact block KV cache")
    format: str = spec_field("merged", help="'merged' (a full model) or 'adapter' (LoRA on the teacher)")

    def validate(self) -> None:
        for k in TAUS:
            if not 0 <= getattr(self, k) <= 1:
                raise SpecError(f"{k}={getattr(self, k)}: must be in [0, 1]")
        super().validate()
        if self.format not in ("merged", "adapter"):
            raise SpecError(f"format={self.format!r}: must be 'merged' or 'adapter'")
