"""Building the built-in tiny teachers (`accel teacher build dllm|ar|dllm-long|ar-long`).

The dLLM is trained as a masked-diffusion LM (LLaDA SFT): the response region is padded with
end tokens to a length drawn per batch from {32, 64, 128, 256} (so it decodes well at the
bench's gen lengths while most batches stay short), and masked either i.i.d. at a uniform
ratio or semi-autoregressively (earlier blocks clean, one block partially masked, later
blocks fully masked: the states the block sampler visits). Loss: CE on masked positions.
The AR model is a causal LM trained on prompt → response + eos.

The dLLM starts from the AR teacher's weights (shifted logits, Dream-style) and anneals its
attention from causal to bidirectional over the first 1,000 steps (DiffuLLaMA): switching at
once destroys the AR circuits, and the tiny model then never relearns carried digits
(two-step arithmetic stayed at 3% after 3,500 steps; with annealing the ones digit of a sum is
right about half the time at step 1,500 instead of chance). A second, lower-LR stage reweights
the mix towards the tasks still below the bar.

Deterministic: fixed seed, fixed thread count, examples drawn from the seeded task suite;
the build stops at a fixed step or, deterministically, once every task's held-out accuracy
passes `target` at an evaluation point.

The long world (``world="long"``, docs/long-world.md) is the same recipe on the long-answer
suite, started from the short world's weights: every dLLM row gets the world's full 128-token
canvas (the answers fill 3-7 blocks of 16) and its semi-AR state picks a block uniformly among
those the answer reaches; state is saved every `save_every` steps because its steps take about
a second, not milliseconds.
"""
from __future__ import annotations

import io
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from accel.core.files import atomic_dir, write_atomic
from accel.data.collate import ar_batch as _ar_batch
from accel.data.collate import tokenize_examples as _tokenize_examples
from accel.data.long_tasks import LONG_BLOCK_LEN, LONG_GEN_LEN
from accel.data.tasks import generate, mixture, resolve_tasks, score, test_split
from accel.data.tokenizer import build_tokenizer, chat_prompt_ids
from accel.decoding.ar import generate_greedy
from accel.decoding.dllm import generate_vanilla
from accel.models.backbone import Adapter
from accel.models.masks import full_mask, position_ids
from accel.models.tiny import make_model

RESP_LENS = (32, 64, 128, 256)
RESP_LEN_P = (0.5, 0.2, 0.15, 0.15)
RESP_LEN_BATCH_DIV = {32: 1, 64: 2, 128: 4, 256: 8}
"""Long windows mostly teach end-token padding: fewer rows keep tokens per step level."""
@dataclass
class TeacherBuildConfig:
    kind: str = "dllm"
    seed: int = 0
    max_steps: int = 4000
    batch_size: int = 64
    learning_rate: float = 1.5e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 300
    weight_decay: float = 0.01
    eval_every: int = 500
    eval_n: int = 24
    target: float = 0.95
    threads: int = 1
    train_per_task: int = 20000
    init_from: str = ""
    """Directory (or builtin:NAME) to start from. dLLM: the AR teacher (with shift_logits, Dream-style
    AR→diffusion adaptation) or a dLLM of the same shape; AR: an AR teacher of the same shape (the long
    world starts from the short world's teachers, which share its tokenizer)."""
    shift_logits: bool = False
    """dLLM only: logits[i-1] predicts token i (Dream convention; natural when starting from an AR model)."""
    attention_anneal_steps: int = 0
    """dLLM only: over the first N steps, future keys become visible with probability rising
    linearly from 0 to 1 (DiffuLLaMA's attention-mask annealing), so an AR-initialised model
    keeps its left-to-right circuits (e.g. carried digits) while it learns bidirectional attention."""
    task_weights: str = ""
    """'task=w,...': train examples of a task drawn w times as often (integer w; default 1)."""
    world: str = "short"
    """'short' (the CI world's suite) or 'long' (the long-answer suite; the long settings below)."""
    model_overrides: dict = field(default_factory=dict)
    """LlamaConfig fields over `accel.models.tiny.TINY_AR` (the long world's teacher is larger)."""
    save_every: int = 0
    """Also save resumable state every N steps (0: at evaluations only)."""
    eval_gen_len: int = 32
    """Generation length of the held-out evaluation (the long world's is its canvas, 128)."""
    eval_tasks: list = field(default_factory=list)
    """Tasks the held-out evaluation checks (empty: every training task); the pilot watches the hardest."""
    log_every: int = 0
    """Also log loss and steps/s every N steps (0: at evaluations only); a CPU-hours build needs a pulse."""

    @property
    def tasks(self) -> list[str]:
        return ["long"] if self.world == "long" else ["all"]

    @classmethod
    def for_kind(cls, kind: str, **kw) -> "TeacherBuildConfig":
        """The settings the shipped teachers were built with (kind 'dllm-long'/'ar-long': the long world)."""
        if kind.endswith("-long"):
            return cls.for_long(kind.removesuffix("-long"), **kw)
        if kind == "dllm":
            base = dict(kind="dllm", max_steps=3000, learning_rate=1e-3, warmup_steps=100, shift_logits=True,
                        attention_anneal_steps=1000, task_weights="arith=3,replace=2", eval_n=48)
        else:
            base = dict(kind="ar", max_steps=6000)
        base.update(kw)
        return cls(**base)

    @classmethod
    def for_long(cls, kind: str, **kw) -> "TeacherBuildConfig":
        """The long world's teacher: the short world's 4 x 128 shape, started from its teachers' weights.

        Sized by the pilot (`scripts/long_pilot.py`, docs/long-world.md) to a CPU-minutes budget: a
        6 x 192 model costs 3.4x as much per step for the same loss at the same step, and the short
        teachers share the tokenizer, so the AR teacher starts from the short AR teacher (the CLI
        passes it) and the dLLM from the long AR teacher. Steps are a budget; the build stops once
        every long task passes `target` at an evaluation (16 prompts per task, early-stopped decodes:
        seconds, not minutes)."""
        base = dict(kind=kind, world="long", batch_size=32, train_per_task=4000, eval_n=16,
                    eval_gen_len=LONG_GEN_LEN, target=0.92, save_every=100, log_every=50, learning_rate=1e-3,
                    warmup_steps=100, eval_every=500)
        if kind == "dllm":  # a full 128-token canvas per row: half the rows keep a step near the AR step's cost
            # long-count is learnt first (1.00 at AR step 1,500); the others, which read S or the end from the
            # prompt, are drawn twice as often
            base.update(max_steps=3000, batch_size=16, shift_logits=True, attention_anneal_steps=500,
                        task_weights="long-step=2,long-down=2,long-either=2,long-anystart=2")
        else:
            base.update(max_steps=2500)
        base.update(kw)
        return cls(**base)

    @classmethod
    def stages_for(cls, kind: str, **kw) -> list["TeacherBuildConfig"]:
        """The shipped build, stage by stage (each stage starts from the previous one's output).

        The dLLM gets two more lower-LR stages weighted towards the tasks that stage one leaves
        below the bar (arith's carried digits, replace's positional indexing): order-free
        decoding makes them harder than for the AR teacher, and a fresh cosine cycle on a
        reweighted mix moves them faster than one longer run.
        """
        first = cls.for_kind(kind, **kw)
        if kind == "dllm-long":  # one more lower-LR cycle, weighted like the short world's refinement
            refine = {"max_steps": 2000, "learning_rate": 4e-4, "warmup_steps": 50, "attention_anneal_steps": 0}
            return [first, cls.for_kind(kind, **{**kw, **refine})]
        if kind != "dllm":
            return [first]
        refine = {"max_steps": 3000, "learning_rate": 5e-4, "warmup_steps": 50, "eval_every": 250, "eval_n": 48,
                  "attention_anneal_steps": 0}
        second = cls.for_kind(kind, **{**kw, **refine, "task_weights": "arith=6,replace=2"})
        third = cls.for_kind(kind, **{**kw, **refine, "task_weights": "arith=8"})
        return [first, second, third]


def parse_task_weights(spec: str) -> dict[str, int]:
    """'arith=4,replace=3' → {'arith': 4, 'replace': 3}, with the task names validated."""
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, w = part.partition("=")
        if not w.strip().isdigit() or int(w) < 1:
            raise ValueError(f"task_weights entry {part!r} must look like 'task=N' with N a positive integer")
        (name,) = resolve_tasks([name.strip()])
        out[name] = int(w)
    return out


def _dllm_batch(pairs, tok, rng: random.Random, mask_id: int, block_len: int = 32, long: bool = False):
    if long:  # every row the world's full canvas: the answers themselves span the blocks
        R, block_len = LONG_GEN_LEN, LONG_BLOCK_LEN
    else:
        R = rng.choices(RESP_LENS, RESP_LEN_P)[0]
        pairs = pairs[:max(4, len(pairs) // RESP_LEN_BATCH_DIV[R])]
    P = max(len(p) for p, _ in pairs)
    B = len(pairs)
    ids = torch.full((B, P + R), tok.pad_token_id, dtype=torch.long)
    valid = torch.zeros((B, P + R), dtype=torch.bool)
    resp = torch.zeros((B, P + R), dtype=torch.bool)
    for i, (p, r) in enumerate(pairs):
        r = (r + [tok.eos_token_id] * R)[:R]
        ids[i, P - len(p):P] = torch.tensor(p)
        ids[i, P:] = torch.tensor(r)
        valid[i, P - len(p):] = True
        resp[i, P:] = True
    # masking: half i.i.d. uniform ratio, half semi-AR block states
    u = torch.rand(B, P + R, generator=_gen(rng))
    t = torch.rand(B, 1, generator=_gen(rng)).clamp(min=0.02)
    masked = (u < t) & resp
    semi = torch.rand(B, generator=_gen(rng)) < 0.5
    nb = R // block_len
    for i in torch.nonzero(semi).flatten().tolist():
        if long:  # any block the answer reaches (or the first all-end block after it)
            k = rng.randrange(min(nb, (len(pairs[i][1]) + 1) // block_len + 1))
        else:
            k = min(int(rng.expovariate(1.0)), nb - 1)  # early blocks matter most: answers are short
        s, e = P + k * block_len, P + (k + 1) * block_len
        row = torch.zeros(P + R, dtype=torch.bool)
        row[s:e] = u[i, s:e] < t[i]
        if long:  # and everything from a random cut on: the decoding frontier, the state a left-to-right
            row[s + rng.randrange(block_len + 1):e] = True  # fill of the block reaches (docs/long-world.md)
        row[e:] = True
        if not row.any():
            row[s + rng.randrange(block_len)] = True
        masked[i] = row
    inp = torch.where(masked, torch.full_like(ids, mask_id), ids)
    return inp, ids, valid, masked


def annealed_mask(valid, p_future: float, rng: random.Random):
    """Causal attention plus each future (query, key) pair visible with probability p_future."""
    B, L = valid.shape
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    future = torch.rand(B, 1, L, L, generator=_gen(rng)) < p_future
    return (causal[None, None] | future) & valid[:, None, None, :]


def _gen(rng):
    return torch.Generator().manual_seed(rng.getrandbits(63))


def evaluate(adapter, n: int, gen_len: int = 32, tasks=None, batch_size: int = 64,
             block_len: int = 32) -> dict[str, float]:
    """Exact-match accuracy per task with the slow baseline (dLLM: 1 token/step; AR: greedy).

    The dLLM decode stops once every row has ended (`stop_when_ended`: the same tokens as the full
    schedule), which makes a long-world evaluation cost seconds instead of minutes."""

    acc = {}
    for task in resolve_tasks(tasks):
        exs = test_split(task, n)
        ok = 0
        for i in range(0, len(exs), batch_size):
            chunk = exs[i:i + batch_size]
            prompts = [chat_prompt_ids(adapter.tokenizer, e["prompt"]) for e in chunk]
            if adapter.kind == "dllm":
                res = generate_vanilla(adapter, prompts, gen_len=gen_len, block_len=min(block_len, gen_len),
                                       stop_when_ended=True)
            else:
                res = generate_greedy(adapter, prompts, max_new_tokens=gen_len)
            ok += sum(score(e, t) for e, t in zip(chunk, res.texts))
        acc[task] = ok / len(exs)
    return acc


def build_teacher(cfg: TeacherBuildConfig, out_dir: str | Path, work_dir: str | Path | None = None, log=print):
    """Trains a tiny teacher and saves it as an HF directory (model + tokenizer) in out_dir."""


    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    out_dir = Path(out_dir)
    work_dir = Path(work_dir or str(out_dir) + ".work")
    work_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    model = make_model(cfg.kind, tok, seed=cfg.seed, shift_logits=cfg.shift_logits and cfg.kind == "dllm",
                       **cfg.model_overrides)
    if cfg.world == "long":
        model.config.accel_world = "long"  # bench / evaluate default to the long tasks (and gen 256)
    if cfg.init_from:
        src = Path(cfg.init_from)
        model.load_state_dict(load_file(str(src / "model.safetensors")), strict=False)
        model.tie_weights()
        log(f"initialised from {src}")
    model.train()
    log(f"{cfg.kind}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    examples = mixture("train", cfg.train_per_task, tasks=cfg.tasks, seed=cfg.seed)
    for task, w in parse_task_weights(cfg.task_weights).items():
        if w > 1:  # the extra draws are new examples of that task, not repeats
            examples += generate(task, "train", cfg.train_per_task * w, seed=cfg.seed)[cfg.train_per_task:]
    data = _tokenize_examples(tok, examples)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98))

    def lr_at(step):
        if step < cfg.warmup_steps:
            return cfg.learning_rate * (step + 1) / cfg.warmup_steps
        prog = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.learning_rate * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))

    mask_id = tok.mask_token_id
    adapter = Adapter(model=model, tokenizer=tok, family="builtin", kind=cfg.kind, source="build",
                      mask_id=mask_id if cfg.kind == "dllm" else None, eos_ids=(tok.eos_token_id,),
                      shift_logits=cfg.shift_logits and cfg.kind == "dllm")
    start = 0
    state_file = work_dir / "state.pt"
    if state_file.exists():  # resume an interrupted build
        st = torch.load(state_file, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        rng.setstate(_rng_from_json(work_dir))
        torch.set_rng_state(st["torch_rng"])
        start = st["step"]
        log(f"resumed at step {start}")
    t0 = time.time()
    metrics = open(work_dir / "metrics.jsonl", "a")
    done = False
    finished = start  # a build resumed after its last step goes straight to saving
    for step in range(start, cfg.max_steps):
        finished = step + 1
        batch = rng.sample(data, cfg.batch_size)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        if cfg.kind == "dllm":
            inp, tgt, valid, masked = _dllm_batch(batch, tok, rng, mask_id, long=cfg.world == "long")
            attn = full_mask(valid)
            if step < cfg.attention_anneal_steps:
                attn = annealed_mask(valid, (step + 1) / cfg.attention_anneal_steps, rng)
            logits, _ = adapter.dllm_logits(inp, attn, position_ids(valid))
            loss = torch.nn.functional.cross_entropy(logits[masked], tgt[masked])
        else:
            ids, valid, labels = _ar_batch(batch, tok)
            logits = model(input_ids=ids, attention_mask=valid.long(), position_ids=position_ids(valid)).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            rec = {"step": step, "loss": round(loss.item(), 5), "lr": lr_at(step), "elapsed_s": round(time.time() - t0, 1)}
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
        if cfg.log_every and (step + 1) % cfg.log_every == 0:
            rate = (step + 1 - start) / max(1e-9, time.time() - t0)
            log(f"step {step + 1}/{cfg.max_steps} loss {loss.item():.4f} {rate:.3f} steps/s "
                f"({time.time() - t0:.0f}s this run)")
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and (step + 1) % cfg.eval_every \
                and step + 1 != cfg.max_steps:
            _save_state(work_dir, model, opt, step + 1, rng)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps:
            model.eval()
            acc = evaluate(adapter, cfg.eval_n, gen_len=cfg.eval_gen_len, tasks=cfg.eval_tasks or cfg.tasks,
                           block_len=LONG_BLOCK_LEN if cfg.world == "long" else 32)
            model.train()
            worst = min(acc.values())
            log(f"step {step + 1} loss {loss.item():.4f} {time.time() - t0:.0f}s acc " +
                " ".join(f"{k}={v:.2f}" for k, v in acc.items()))
            metrics.write(json.dumps({"step": step + 1, "eval": acc}) + "\n")
            metrics.flush()
            _save(model, tok, work_dir / "latest")
            _save_state(work_dir, model, opt, step + 1, rng)
            if worst >= cfg.target:
                done = True
                break
    _save(model, tok, out_dir)
    (out_dir / "build.json").write_text(json.dumps({"config": asdict(cfg), "finished_step": finished,
                                                    "stopped_on_target": done}, indent=1))
    return out_dir


def _save_state(work_dir: Path, model, opt, step: int, rng):
    """The resumable state: weights, optimizer, step and both RNGs."""
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "torch_rng": torch.get_rng_state()}, buf)
    write_atomic(work_dir / "state.pt", buf.getvalue())
    write_atomic(work_dir / "rng.json", json.dumps(_rng_to_json(rng)))


def _rng_to_json(rng):
    v, state, g = rng.getstate()
    return [v, list(state), g]


def _rng_from_json(work_dir):
    v, state, g = json.loads((Path(work_dir) / "rng.json").read_text())
    return (v, tuple(state), g)


def _save(model, tok, out: Path):
    """HF save into a temp dir swapped in by one rename."""
    with atomic_dir(out, may_replace=lambda p: True) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
