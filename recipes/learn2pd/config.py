"""Learn2PD recipe config (no torch import: the CLI reads it for --help)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.trainers.config import ConfigError, ModelConfig, TrainConfig, _f, defaults


SIZES = {"builtin": dict(n_per_task=40, calib_per_task=24, oracle_batch_size=32, calib_batch_size=32),
         "published": dict(n_per_task=4, calib_per_task=2, oracle_batch_size=8, calib_batch_size=8)}
"""The defaults of the size keys left unset, per backbone. Built-in teachers: ~2.5 CPU-minutes for the whole
run (README). A published LLaDA / Dream scores a 126K-152K vocabulary at every decode step, ~1,600x the
built-in teachers' 77 tokens: on the tiny random LLaDA (`make_tiny.py llada`) a one-token-per-step reference
of gen 64 costs ~2 CPU-s per prompt even with the dual cache, so 36 oracle prompts and 18 held-out ones keep
the run within 5 CPU-minutes (docs/published-dllm.md); batches of 8 keep each step's logits at 130 MB and
move the progress bars every few seconds. A real LLaDA-8B needs a GPU and the user's prompts
(recipes/configs/learn2pd/llada-8b.yaml)."""


@dataclass
@defaults(lr_scheduler_type="constant", save_steps=500, logging_steps=50, max_grad_norm=0.0,
           backbone=_f("builtin:dllm", "dLLM teacher: builtin:dllm or a local HF model directory."))
class Config(ModelConfig, TrainConfig):
    """Oracle-data generation + filter training. Filter training is full batch (all oracle steps
    of the training split in one batch), so the batch-size / accumulation fields do not apply."""
    output_dir: str = _f("runs/learn2pd", "Run directory: oracle data (unless oracle_dir), filter, metrics.")
    device: str = _f("auto", "Device for oracle decoding and training: auto, cpu, cuda, cuda:N.")
    prompts: str = _f("suite", "Training prompts: suite, a .jsonl with a 'prompt' field, or an HF dataset dir.")
    tasks: str = _f("all", "Comma-separated suite tasks for prompts=suite ('all' = every task).")
    n_per_task: int | None = _f(None, "Suite prompts per task (train split); max prompts for jsonl/HF sources (0 = all). "
                                      "Unset: 40, or 4 on a published LLaDA / Dream.")
    oracle_dir: str = _f("", "Oracle dataset directory (empty: <output_dir>/oracle); generated when missing.")
    gen_len: int = _f(64, "Generation length of the oracle decodes (a multiple of block_len).")
    block_len: int = _f(32, "Block length: the filter's input/output width and the decode block.")
    oracle_batch_size: int | None = _f(None, "Prompts decoded together (and per resumable shard) for oracle data. "
                                             "Unset: 32, or 8 on a published LLaDA / Dream.")
    decode_cache: str = _f("auto", "KV cache of the oracle decodes and the tau calibration: auto (dual on a published "
                                   "LLaDA / Dream whose cached forward runs, none on the built-in teachers), none "
                                   "(every step a full forward: exact, and on a 126K vocabulary the whole canvas' "
                                   "logits per step), prefix or dual.", ("auto", "none", "prefix", "dual"))
    hidden_size: int = _f(32, "Filter hidden width (32 -> ~2.1K parameters at block 32).")
    loss_on: str = _f("masked", "BCE positions: masked (still-masked block positions) or all.", ("masked", "all"))
    shift_copies: int = _f(1, "Training mix: each oracle step also at shift_copies - 1 more circular offsets of its "
                              "block, so a confidence pattern is not tied to where the training formats put it "
                              "(short world, leave-one-task-out: 8 kept shuffle at 1.000 instead of 0.781; "
                              "docs/long-world.md). 1 = the oracle steps as they are.")
    val_fraction: float = _f(0.2, "Fraction of prompts held out to report precision/recall/FPR.")
    tau: float = _f(0.999, "Decode threshold on sigmoid(filter logit) when calibrate_tau=false (paper: 0.96 on "
                           "LLaDA-8B); with calibration, only the threshold of the logged training metrics.")
    calibrate_tau: bool = _f(True, "Pick tau after training on held-out prompts: the smallest threshold that decodes "
                                   "them as well as the teacher's one-token-per-step decode (suite prompts: accuracy "
                                   "within calib_tolerance; others: agreement with its outputs within calib_tolerance "
                                   "of the best tau's). false: ship tau as given.")
    calib_tolerance: float = _f(0.0, "Held-out accuracy (or agreement) the chosen tau may give up.")
    calib_per_task: int | None = _f(None, "Suite prompts: fresh train-split prompts per task (after the oracle's "
                                          "n_per_task) decoded per tau when calibrating. Unset: 24, or 2 on a published "
                                          "LLaDA / Dream.")
    calib_batch_size: int | None = _f(None, "Prompts decoded together when calibrating. Unset: 32, or 8 on a "
                                            "published LLaDA / Dream.")
    calib_full_table: bool = _f(False, "Decode every tau of the grid; false: stop at the first tau that decodes the "
                                       "held-out prompts as accurately as the reference (no larger tau can be chosen "
                                       "then, and the larger ones cost the most forwards).")
    calib_prompts: int = _f(64, "Other prompt sources: held-out (val split) prompts decoded per tau when calibrating.")
    eotp: bool = _f(True, "End-of-Text Prediction on by default in the exported checkpoint.")
    learning_rate: float = _f(3e-3, "AdamW learning rate (full batch).")
    max_steps: int = _f(1500, "Full-batch optimizer steps.")
    per_device_train_batch_size: int = _f(1, "Unused: every step sees the whole training split (full batch).")

    def sized(self, published: bool) -> "Config":
        """Fills the unset sizes (`SIZES`) for the backbone; returns self."""
        for key, value in SIZES["published" if published else "builtin"].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        return self

    def resolved_oracle_dir(self) -> str:
        return self.oracle_dir or f"{self.output_dir.rstrip('/')}/oracle"

    def validate(self) -> None:
        """One-line ConfigErrors for values that would fail later (called by the config loader)."""
        super().validate()
        if self.block_len <= 0 or self.gen_len <= 0 or self.gen_len % self.block_len:
            raise ConfigError(f"gen_len={self.gen_len} must be a positive multiple of block_len={self.block_len}")
        if not 0.0 < self.tau < 1.0:
            raise ConfigError(f"tau={self.tau} must be in (0, 1): it thresholds sigmoid(filter logit)")
        if not 0.0 <= self.calib_tolerance < 1.0:
            raise ConfigError(f"calib_tolerance={self.calib_tolerance} must be in [0, 1)")
        if self.calibrate_tau and self.prompts == "suite" and self.calib_per_task is not None and self.calib_per_task < 1:
            raise ConfigError("calibrate_tau=true needs calib_per_task >= 1 (or set calibrate_tau=false and pick tau)")
        if self.calibrate_tau and self.prompts != "suite" and (self.val_fraction <= 0 or self.calib_prompts < 1):
            raise ConfigError("calibrate_tau=true needs held-out prompts: val_fraction > 0 and calib_prompts >= 1 "
                              "(or set calibrate_tau=false and pick tau yourself)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if self.loss_on not in ("masked", "all"):
            raise ConfigError(f"loss_on={self.loss_on!r}: choose masked or all")
        if not 1 <= self.shift_copies <= self.block_len:
            raise ConfigError(f"shift_copies={self.shift_copies} must be in 1..block_len ({self.block_len})")
        if self.hidden_size <= 0 or any(v is not None and v <= 0 for v in (self.oracle_batch_size, self.calib_batch_size)):
            raise ConfigError("hidden_size, oracle_batch_size and calib_batch_size must be positive")
