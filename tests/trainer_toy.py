"""A toy workload for the trainer tests: a small MLP regression whose loss draws random noise.

The noise makes the test sensitive to RNG handling on resume; `sleep_s` slows steps so a
subprocess can be killed mid-run; `nan_at_step` poisons the loss. Run as a script:
``python tests/trainer_toy.py key=value ...`` (prints the FitResult as JSON on the last line).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from accel.trainers.config import TrainConfig, _f


@dataclass
class ToyConfig(TrainConfig):
    n_examples: int = _f(64, "Dataset size.")
    noise: float = _f(0.1, "Input noise drawn inside loss_fn (exercises RNG on resume).")
    sleep_s: float = _f(0.0, "Sleep per micro-batch (lets a test kill the run mid-way).")
    nan_at_step: int = _f(-1, "Return a NaN loss at this optimizer step (>= 0).")


def make_data(n: int):
    import torch
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n, 4, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 3.0]))[:, None] + 0.1 * torch.randn(n, 1, generator=g)
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def collate(rows):
    import torch
    return {"x": torch.stack([r["x"] for r in rows]), "y": torch.stack([r["y"] for r in rows])}


def make_model():
    import torch
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def make_loss(cfg: ToyConfig):
    import torch
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        if cfg.sleep_s:
            time.sleep(cfg.sleep_s)
        x = batch["x"] + cfg.noise * torch.randn_like(batch["x"])
        loss = torch.nn.functional.mse_loss(model(x), batch["y"])
        step = (calls["n"] - 1) // cfg.gradient_accumulation_steps  # counted from this process's start
        if 0 <= cfg.nan_at_step <= step:
            loss = loss * float("nan")
        return loss, {"abs_err": float((model(batch["x"]).detach() - batch["y"]).abs().mean())}

    return loss_fn


def main(argv: list[str]) -> None:
    import torch
    torch.set_num_threads(1)
    from accel.trainers.loading import load_config
    from accel.trainers.trainer import fit

    cfg = load_config(ToyConfig, None, argv)
    res = fit(cfg, make_model(), make_loss(cfg), make_data(cfg.n_examples), data_collator=collate)
    print(json.dumps({"run_dir": str(res.run_dir), "global_step": res.global_step, "metrics": res.metrics,
                      "final_checkpoint": str(res.final_checkpoint)}))


if __name__ == "__main__":
    main(sys.argv[1:])
