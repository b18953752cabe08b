"""GPU benchmark of the fused argmax/prob/entropy kernel (decoding/kernels.py).

Compares, on LLaDA-sized logits ([8, 256, 126464] bf16 by default), the Triton kernel, the
eager torch reference and torch.compile(reference); reports milliseconds and effective
bandwidth (bytes of logits read + outputs written, per call) against the GPU's HBM peak, and
writes everything as JSON. The kernel is one read of the logits, so its GB/s is the number
that says how close the decode step's sampling is to free.

    python scripts/bench_kernels.py --out runs/bench_kernels.json
    python scripts/bench_kernels.py --shape 4,32,126464 --peak-tbps 2.0 --out k.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from accel.decoding.kernels import argmax_prob_entropy_ref, argmax_prob_entropy_triton, triton

PEAK_TBPS = {"H200": 4.8, "H100": 3.35}
"""HBM peak by GPU name (H100 SXM; H200). Other GPUs: pass --peak-tbps."""


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise SystemExit(f"error: --shape {text!r} must be comma-separated integers, e.g. 8,256,126464") from None
    if len(shape) < 2 or any(d <= 0 for d in shape):
        raise SystemExit(f"error: --shape {text!r} needs at least two positive dims (..., vocab)")
    return shape


def _peak(name: str, override: float | None) -> float | None:
    if override is not None:
        return override
    for key, tbps in PEAK_TBPS.items():
        if key in name.upper():
            return tbps
    return None


def _time(fn, x, iters: int, warmup: int) -> float:
    """Median milliseconds per call, CUDA events around each call."""
    for _ in range(warmup):
        fn(x)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write the results to")
    ap.add_argument("--shape", default="8,256,126464", help="logits shape, comma-separated (last = vocab)")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--peak-tbps", type=float, default=None,
                    help="HBM peak in TB/s (detected for H100/H200; needed for other GPUs to report %% of peak)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile(reference) row")
    args = ap.parse_args(argv)
    shape = _parse_shape(args.shape)

    if not torch.cuda.is_available():
        print("error: no CUDA device; this benchmark needs a GPU (the kernel's CPU check is tests/test_kernels.py)",
              file=sys.stderr)
        return 2

    if triton is None:
        print("error: triton is not installed; pip install 'accel[kernels]'", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name()
    peak = _peak(name, args.peak_tbps)
    dtype = getattr(torch, args.dtype)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(shape, device="cuda", generator=g) * 3).to(dtype)
    n_rows = x.numel() // shape[-1]
    bytes_moved = x.numel() * x.element_size() + n_rows * (8 + 4 + 4)

    # correctness on the benchmarked tensor first: a fast wrong kernel is not a result
    ids_k, p_k, h_k = argmax_prob_entropy_triton(x)
    ids_r, p_r, h_r = argmax_prob_entropy_ref(x)
    check = {"argmax_equal": bool(torch.equal(ids_k, ids_r)),
             "prob_max_abs_err": float((p_k - p_r).abs().max()),
             "entropy_max_abs_err": float((h_k - h_r).abs().max())}

    impls = {"triton_fused": argmax_prob_entropy_triton, "torch_eager": argmax_prob_entropy_ref}
    if not args.no_compile:
        impls["torch_compile"] = torch.compile(argmax_prob_entropy_ref, dynamic=False)
    rows = {}
    for label, fn in impls.items():
        try:
            ms = _time(fn, x, args.iters, args.warmup)
        except Exception as e:  # noqa: BLE001 - e.g. torch.compile unavailable: report, keep the others
            rows[label] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            continue
        gbps = bytes_moved / (ms * 1e-3) / 1e9
        rows[label] = {"ms": round(ms, 4), "GB_per_s": round(gbps, 1),
                       "pct_of_peak": None if peak is None else round(100 * gbps / (peak * 1e3), 1)}
    base = rows.get("torch_eager", {}).get("ms")
    for r in rows.values():
        if base and "ms" in r:
            r["speedup_vs_eager"] = round(base / r["ms"], 2)

    result = {"device": name, "peak_TB_per_s": peak, "shape": list(shape), "dtype": args.dtype,
              "bytes_per_call": bytes_moved, "iters": args.iters, "check": check, "results": rows,
              "torch": torch.__version__, "triton": triton.__version__}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    for label, r in rows.items():
        print(f"{label:14s} " + ("  ".join(f"{k}={v}" for k, v in r.items())))
    if peak is None:
        print(f"(unknown HBM peak for {name!r}: pass --peak-tbps to report % of peak)")
    print(f"check: {check}\nwrote {out}")
    return 0 if check["argmax_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
