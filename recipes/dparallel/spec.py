"""What a dParallel checkpoint carries: the entropy-threshold rule, its threshold, the block length,
the export format and the undistilled teacher the baseline rows run on.

Written by `export.py` through `save_distilled(..., spec=)`, read by `inference.py` with
`ckpt.spec(Spec)`; the config.json keys are the field names, under "decode" and/or "dparallel"
(next to the run's provenance: LoRA shape, steps, trajectories).
"""
from __future__ import annotations

from dataclasses import dataclass

from accel.decoding.spec import OWN, CheckpointSpec, SpecError, spec_field

BOTH = (OWN, "decode")


@dataclass(frozen=True, kw_only=True)
class Spec(CheckpointSpec):
    SECTION = "dparallel"

    method: str = spec_field("dparallel", where=("decode",), help="decode default row")
    rule: str = spec_field("entropy", where=("decode",), help="the unmask rule the threshold applies to")
    teacher: str = spec_field(help="the undistilled backbone the baseline rows decode with")
    seed: int = spec_field(0, help="rebuilds a random:dllm teacher as in training")
    threshold: float = spec_field(where=BOTH, settable=True, help="entropy threshold (nats) for unmasking")
    block_len: int = spec_field(where=BOTH, help="semi-AR block length")
    gen_len: int = spec_field(256, where=("decode",), settable=True, help="decode default generation length")
    format: str = spec_field("merged", help="'merged' (a full model) or 'adapter' (LoRA on the teacher)")

    def validate(self) -> None:
        if self.threshold <= 0:
            raise SpecError(f"threshold={self.threshold}: must be > 0 (entropy in nats; paper: 0.45-0.5)")
        super().validate()
        if self.format not in ("merged", "adapter"):
            raise SpecError(f"format={self.format!r}: must be 'merged' or 'adapter'")
