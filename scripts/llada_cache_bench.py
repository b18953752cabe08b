"""Benchmark of LLaDA's KV-cached forward (issue 26): CPU time per forward, cached vs full, and
Fast-dLLM with a dual cache vs without, on a mid-size random LLaDA built from the published code.

CPU time, not wall time: this is meant to run on shared machines, where wall time measures the
other jobs too. Per-forward numbers are ``resource.getrusage`` user+system seconds of this
process around the forwards; per-method decoding numbers are generated tokens per CPU-second of
the same decoders `accel bench` runs; the `accel bench` run (one run, both methods) is reported
as it prints (its tokens/s is wall clock) together with its children's CPU seconds.

    python scripts/llada_cache_bench.py --out runs/llada_cache_bench.json
    python scripts/llada_cache_bench.py --model DIR        (an existing LLaDA directory)

Without --model it builds the model with the fixtures' make_tiny.py (``--make-tiny``; default
``../shared/fixtures/published-dllm/make_tiny.py``) and ``--set d_model=512 n_layers=8 n_heads=8
n_kv_heads=8 mlp_hidden_size=1408`` into ``--workdir``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from accel.decoding.cache import BlockCache
from accel.decoding.dllm import generate_threshold
from accel.models.backbone import load_backbone
from accel.models.masks import full_mask, position_ids

MID = ["d_model=512", "n_layers=8", "n_heads=8", "n_kv_heads=8", "mlp_hidden_size=1408"]
ROOT = Path(__file__).resolve().parents[1]


def cpu_s(who=resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def per_forward(fn, n: int) -> float:
    """CPU seconds per call of fn, over n calls after one warm-up."""
    fn()
    t = cpu_s()
    for _ in range(n):
        fn()
    return (cpu_s() - t) / n


def forward_costs(a, prompt: list[int], gen_len: int, block_len: int, n: int) -> dict:
    """Full (published, uncached) forward of the whole canvas vs the block fed against a prefix or
    dual cache of the second block, as the Fast-dLLM decoders call them."""
    P = len(prompt)
    x = torch.tensor([prompt + [a.mask_id] * gen_len])
    valid = torch.ones_like(x, dtype=torch.bool)
    pos = position_ids(valid)
    s, e = P + block_len, P + 2 * block_len
    out = {}
    with torch.no_grad():
        out["full"] = per_forward(lambda: a.dllm_logits(x, full_mask(valid), pos), n)
        for mode in ("prefix", "dual"):
            bc = BlockCache(a, mode)
            bc.logits(x, valid, pos, s, e, first=True)
            out[mode] = per_forward(lambda: bc.logits(x, valid, pos, s, e, first=False), n)
    out["prefix_ratio"] = out["prefix"] / out["full"]
    out["dual_ratio"] = out["dual"] / out["full"]
    return out


def decode_costs(a, prompts: list[list[int]], gen_len: int, block_len: int) -> dict:
    """Generated tokens per CPU-second of fast-dllm (no cache) and fast-dllm-dual, threshold 0.9."""
    res = {}
    for name, cache in (("fast-dllm", None), ("fast-dllm-dual", "dual")):
        t = cpu_s()
        r = generate_threshold(a, prompts, gen_len=gen_len, block_len=block_len, threshold=0.9, cache=cache)
        used = cpu_s() - t
        toks = sum(len(row) for row in r.tokens)
        res[name] = {"cpu_s": used, "tokens": toks, "nfe": r.nfe, "tokens_per_cpu_s": toks / used}
    res["dual_speedup"] = res["fast-dllm-dual"]["tokens_per_cpu_s"] / res["fast-dllm"]["tokens_per_cpu_s"]
    return res


def accel_bench(model: str, gen_len: int, block_len: int, limit: int, json_path: Path) -> dict:
    """One `accel bench` run with both rows; its children's CPU seconds and its JSON report."""
    t = cpu_s(resource.RUSAGE_CHILDREN)
    cmd = [str(Path(sys.executable).with_name("accel")), "bench", model, "--trust-remote-code", "-m", "fast-dllm",
           "-m", "fast-dllm-dual", "--task", "arith", "--limit", str(limit), "--gen-len", str(gen_len),
           "--block-len", str(block_len), "--json", str(json_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return {"command": " ".join(cmd), "rc": proc.returncode, "stdout": proc.stdout[-4000:],
            "stderr": proc.stderr[-2000:], "children_cpu_s": cpu_s(resource.RUSAGE_CHILDREN) - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="an LLaDA directory (default: build the mid-size one)")
    ap.add_argument("--make-tiny", default=str(ROOT.parent / "shared/fixtures/published-dllm/make_tiny.py"))
    ap.add_argument("--workdir", default="/tmp/llada-cache-bench")
    ap.add_argument("--gen-len", type=int, default=256)
    ap.add_argument("--block-len", type=int, default=32)
    ap.add_argument("--forwards", type=int, default=3, help="timed forwards per kind")
    ap.add_argument("--prompts", type=int, default=1, help="prompts decoded per method (and --limit of accel bench)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-bench", action="store_true", help="no `accel bench` run")
    ap.add_argument("--out", type=Path)
    a_ = ap.parse_args()
    torch.set_num_threads(a_.threads)
    model = a_.model
    if model is None:
        model = str(Path(a_.workdir) / "llada-mid")
        if not (Path(model) / "model.safetensors").exists():
            subprocess.run([sys.executable, a_.make_tiny, "llada", model, "--seed", "0", "--set", *MID], check=True)
    a = load_backbone(model, trust_remote_code=True, device="cpu")
    if not a.supports_cache:
        sys.exit("the model has no usable KV cache (see the note above)")
    prompt = a.tokenizer.encode("calc 12+34 and then reverse the digits of the answer")
    report = {"model": model, "threads": torch.get_num_threads(), "gen_len": a_.gen_len, "block_len": a_.block_len,
              "prompt_len": len(prompt), "load_avg": os.getloadavg(), "cpu_count": os.cpu_count(),
              "timing": "resource.getrusage user+system CPU seconds"}
    report["per_forward_cpu_s"] = forward_costs(a, prompt, a_.gen_len, a_.block_len, a_.forwards)
    print(json.dumps({"per_forward_cpu_s": report["per_forward_cpu_s"]}, indent=1), flush=True)
    report["decode"] = decode_costs(a, [prompt] * a_.prompts, a_.gen_len, a_.block_len)
    print(json.dumps({"decode": report["decode"]}, indent=1), flush=True)
    if not a_.skip_bench:
        env_json = Path(a_.workdir) / "bench.json"
        report["accel_bench"] = accel_bench(model, a_.gen_len, a_.block_len, a_.prompts, env_json)
        print(report["accel_bench"]["stdout"], flush=True)
        if env_json.exists():
            report["accel_bench"]["json"] = json.loads(env_json.read_text())
    report["load_avg_end"] = os.getloadavg()
    if a_.out:
        a_.out.parent.mkdir(parents=True, exist_ok=True)
        a_.out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
