"""What a Learn2PD checkpoint carries: the filter's shape, its threshold τ, EoTP and the decode defaults.

Written by `export.py` through `save_checkpoint(..., spec=)`, read by `inference.py` with
`ckpt.spec(Spec)`; the config.json keys are the field names, under "decode" and/or "learn2pd".
"""
from __future__ import annotations

from dataclasses import dataclass

from accel.decoding.spec import OWN, CheckpointSpec, SpecError, spec_field

BOTH = (OWN, "decode")


@dataclass(frozen=True, kw_only=True)
class Spec(CheckpointSpec):
    SECTION = "learn2pd"

    method: str = spec_field("learn2pd+eotp", where=("decode",), help="decode default: learn2pd[+eotp]")
    block_len: int = spec_field(where=BOTH, help="semi-AR block length the filter was trained for")
    hidden_size: int = spec_field(help="the filter MLP's hidden width")
    gen_len: int = spec_field(256, where=("decode",), settable=True, help="decode default generation length")
    tau: float = spec_field(where=BOTH, settable=True, help="unmask when sigmoid(filter logit) >= tau")
    eotp: bool = spec_field(True, where=BOTH, settable=True, help="End-of-Text Prediction: stop at a decoded end token")
    oracle: dict = spec_field({}, help="the oracle run the filter learnt from (teacher, gen_len, ...)")

    def validate(self) -> None:
        if not 0.0 < self.tau < 1.0:
            raise SpecError(f"tau={self.tau} must be in (0, 1)")
        super().validate()
