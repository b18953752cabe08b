"""Where a model source's weights live, and a cheap identity of them.

`weights_stamp` keys every cache built from a teacher (trajectories, oracle data, sampler
states, cached hidden states) and the load-time self-check's fingerprints, so it sits below
both the backbone loader and its self-check (`accel.models.selfcheck`), which the loader calls;
it needs `builtin_dir` to find a shipped teacher's files. Reads file names, sizes and a few
bytes only: no torch.
"""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path


def builtin_dir(kind: str) -> Path:
    """Directory of a shipped tiny teacher (``dllm``, ``ar``, ``dllm-long`` or ``ar-long``)."""
    return Path(str(resources.files("accel.models") / "builtin" / kind))


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_STAMP_BYTES = 1 << 20


def weights_stamp(source: str) -> str:
    """A cheap identity of the weights behind a model source, for caches built from a teacher.

    Trajectories, Learn2PD oracle data and joint-sampler states key on it beside the teacher's
    name, so a rebuilt ``builtin:dllm`` or an overwritten model directory cannot silently reuse
    data made by other weights. It hashes each weight file's name, size and first and last MiB
    (instant on an 8B checkpoint; retrained weights change every tensor). '' when there are no
    files (``random:*``).
    """
    if source.startswith("builtin:"):
        path = builtin_dir(source.split(":", 1)[1])
    elif source.startswith("random:"):
        return ""
    else:
        path = Path(source).expanduser()
    files = sorted(f for f in path.glob("*") if f.suffix in WEIGHT_SUFFIXES and f.is_file()) if path.is_dir() else []
    if not files:
        return ""
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(_STAMP_BYTES))
            if size > _STAMP_BYTES:
                fh.seek(max(_STAMP_BYTES, size - _STAMP_BYTES))
                h.update(fh.read(_STAMP_BYTES))
    return h.hexdigest()[:16]
