"""Config of `accel train joint-sampler` (no torch imports: --help and key checks stay instant)."""
from __future__ import annotations

from dataclasses import dataclass

from accel.trainers.config import ConfigError, ModelConfig, ThreadsConfig, TrainConfig, _f, defaults


@dataclass
@defaults(max_steps=3000, warmup_ratio=0.05, save_steps=200, logging_steps=10,
           backbone=_f("builtin:dllm", "Frozen dLLM: builtin:dllm or a local HF model directory."))
class Config(ModelConfig, ThreadsConfig, TrainConfig):
    """Trajectory data (generated when missing, resumable) -> sampler-layer training -> run dir."""
    output_dir: str = _f("runs/joint-sampler", "Run directory: trajectory data (unless data_dir), sampler, metrics.")
    device: str = _f("auto", "Device for data generation and training: auto, cpu, cuda, cuda:N.")
    prompts: str = _f("builtin", "Training prompts: builtin (the suite's train split), a .jsonl with a 'prompt' "
                                 "field, or an HF dataset dir saved with save_to_disk.")
    tasks: list[str] = _f([], "Suite tasks for prompts=builtin (empty = all).")
    n_per_task: int = _f(128, "Suite prompts per other task (prompts=builtin): answers the teacher is sure of, "
                              "where the layer must stay the identity.")
    dependent_tasks: list[str] = _f(["shuffle", "pick3", "arith"],
                                    "Suite tasks whose answer tokens depend on each other under the teacher "
                                    "(several valid answers; arith's final answer copies its worked steps, which "
                                    "the tiny teacher is unsure of); they get n_per_dependent_task prompts.")
    n_per_dependent_task: int = _f(2048, "Suite prompts per dependent task (prompts=builtin): the layer learns the "
                                         "dependence there and generalizes only from many (measured on shuffle and "
                                         "pick3: 128 -> held-out KL no better than the marginals'; 2048 -> half).")
    data_dir: str = _f("", "Trajectory dataset directory (empty: <output_dir>/data); generated when missing.")
    gen_len: int = _f(64, "Response length of the trajectories (a multiple of block_len); match the decode's "
                          "gen_len (the export's default, 64): the canvas length changes the hidden states.")
    block_len: int = _f(32, "Block length: passes of one step stay inside the current block.")
    max_k: int = _f(4, "Tokens per full forward the sampler is trained for (1 full forward + max_k-1 passes); "
                          "4 = the bench's K: rows for passes a K=4 decode never runs only cost training time.")
    states_per_prompt: int = _f(8, "Dependent training states kept per trajectory: steps whose next max_k-1 "
                                   "tokens depend on the step's earlier ones (data.select_states).")
    plain_states_per_prompt: int = _f(2, "Other (independent: marginal already exact) states kept per "
                                         "trajectory; they keep the layer the identity where nothing depends.")
    dependence_threshold: float = _f(0.05, "A state is dependent when some later step of its window moves the "
                                           "distribution at its position by more than this total variation.")
    traj_temperature: float = _f(1.0, "Sampling temperature of the trajectories (1.0 = the model's own joint).")
    target_topk: int = _f(0, "Teacher conditionals kept per position: 0 = the full vocabulary (small "
                             "vocabularies), m > 0 = the top-m log-probs (large vocabularies).")
    data_batch_size: int = _f(32, "Prompts decoded together when generating trajectories.")
    shard_size: int = _f(64, "Prompts per resumable data shard.")
    token_input: str = _f("add", "How tokens unmasked earlier in the step enter the layer: add (projected "
                                 "embedding added to the hidden state) or replace (it replaces it).",
                          ("add", "replace"))
    next_weight: float = _f(1.0, "Extra weight of the KL at the position the true process unmasks next.")
    order_weight: float = _f(0.0, "Weight of the position-choice loss (cross-entropy of the true next position "
                                  "under the sampler's confidence order; loss.py). Off by default: the decode "
                                  "rule's float32 confidences saturate at 1.0 on end-token padding and break "
                                  "ties by the lowest position, which this smooth surrogate does not model "
                                  "(measured: 0.2 and 1.0 lowered held-out order accuracy).")
    k_default: int = _f(4, "Tokens per full forward recorded as the decode default in the export.")
    temperature: float = _f(1.0, "Decode temperature recorded in the export (0 = greedy); TV is measured at it.")
    eval_n: int = _f(16, "Held-out prompts per multi-answer task scored for joint TV after training (0 = none).")
    top_m: int = _f(4, "Exact evaluation: tokens enumerated per position of the true joint's tree.")
    learning_rate: float = _f(2e-3, "AdamW learning rate of the sampler layer.")
    per_device_train_batch_size: int = _f(16, "Training states per micro-batch (each gives max_k-1 sampler rows).")

    def resolved_data_dir(self) -> str:
        return self.data_dir or f"{self.output_dir.rstrip('/')}/data"

    def validate(self) -> None:
        super().validate()
        if self.block_len < 1 or self.gen_len < 1 or self.gen_len % self.block_len:
            raise ConfigError(f"gen_len={self.gen_len} must be a positive multiple of block_len={self.block_len}")
        if not 2 <= self.max_k <= 8:
            raise ConfigError(f"max_k={self.max_k}: must be in 2..8 (K tokens per full forward)")
        if not 1 <= self.k_default <= 8:
            raise ConfigError(f"k_default={self.k_default}: must be in 1..8")
        if self.plain_states_per_prompt < 0 or not 0 <= self.dependence_threshold < 1:
            raise ConfigError("plain_states_per_prompt must be >= 0 and dependence_threshold in [0, 1)")
        if self.states_per_prompt < 1 or self.data_batch_size < 1 or self.shard_size < 1 or self.n_per_task < 1 \
                or self.n_per_dependent_task < 1:
            raise ConfigError("states_per_prompt, data_batch_size, shard_size, n_per_task and "
                              "n_per_dependent_task must be >= 1")
        if self.traj_temperature < 0 or self.temperature < 0:
            raise ConfigError("traj_temperature and temperature must be >= 0 (0 = greedy)")
        if self.target_topk < 0:
            raise ConfigError(f"target_topk={self.target_topk}: use 0 (full vocabulary) or a positive m")
        if self.top_m < 1 or self.eval_n < 0:
            raise ConfigError("top_m must be >= 1 and eval_n >= 0")
        if self.order_weight < 0 or self.next_weight < 0:
            raise ConfigError("order_weight and next_weight must be >= 0")
        if self.token_input not in ("add", "replace"):
            raise ConfigError(f"token_input={self.token_input!r}: choose add or replace")
