"""Checking weight files before anything loads them: a truncated or corrupt safetensors file (a copy
cut short, a full disk at export) is reported as one line naming the file and the fix, instead of a
loader traceback fifty lines deep. Reads only the 8-byte length and the JSON header: no torch, and
cheap enough to run on every load."""
from __future__ import annotations

import json
import struct
from pathlib import Path

_MAX_HEADER = 100 * 1024 * 1024


class WeightFileError(ValueError):
    """A weight file that cannot be loaded as it is; the message names the file and the fix."""


def check_safetensors(path: str | Path, fix: str = "re-export or copy it again") -> None:
    """Raise WeightFileError unless `path` is a complete safetensors file (header + every tensor's bytes)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise WeightFileError(f"{path} is empty or truncated ({size} bytes); {fix}")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise WeightFileError(f"{path} is truncated or not a safetensors file (header of {n} bytes, file of "
                                      f"{size}); {fix}")
            header = json.loads(f.read(n))
    except WeightFileError:
        raise
    except OSError as e:
        raise WeightFileError(f"{path} cannot be read ({e.strerror or e}); {fix}") from None
    except (ValueError, UnicodeDecodeError):
        raise WeightFileError(f"{path} is corrupt (its safetensors header is not valid JSON); {fix}") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"{path} is corrupt (bad safetensors header); {fix}")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        raise WeightFileError(f"{path} is corrupt (bad tensor entries in its safetensors header); {fix}") from None
    if 8 + n + end > size:
        raise WeightFileError(f"{path} is truncated ({size} of {8 + n + end} bytes); {fix}")


def check_model_dir(path: str | Path, fix: str = "re-export or copy the directory again") -> None:
    """Check every safetensors file of a model directory, and that a sharded index's files all exist."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise WeightFileError(f"{index} is not a valid shard index; {fix}") from None
        missing = sorted(f for f in files if not (path / f).is_file())
        if missing:
            raise WeightFileError(f"{path} is incomplete: {', '.join(missing[:3])}"
                                  f"{' and more' if len(missing) > 3 else ''} missing; {fix}")
    for f in sorted(path.glob("*.safetensors")):
        check_safetensors(f, fix)
