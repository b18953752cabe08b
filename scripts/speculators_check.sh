#!/usr/bin/env bash
# Checks an EAGLE-3 run's speculators export with the speculators package itself.
#
#   scripts/speculators_check.sh RUN [VENV_DIR]
#
# RUN: an `accel train eagle3` run directory (with final/) on a target that is a model directory
# (builtin:ar works). VENV_DIR (default /tmp/accel-speculators-venv) is created if missing, with
# torch==2.13.0 and speculators==0.9.0 — a separate environment because speculators pins
# transformers<=5.19 and accel uses a newer one. The check:
#   1. accel (this repo's python) exports RUN with --format speculators and records, for the
#      target's hidden states on a prompt, the draft's logits over a 3-step unroll;
#   2. the speculators venv loads the export (Eagle3DraftModel.from_pretrained, eager attention,
#      fp32), runs its own forward on the same inputs and compares its logits (captured at
#      lm_head) with accel's at every position whose fed token lies inside the prompt: prints the max abs
#      diff, fails above 1e-4.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=${1:?usage: scripts/speculators_check.sh RUN [VENV_DIR]}
VENV=${2:-/tmp/accel-speculators-venv}
ACCEL_PY=${ACCEL_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$ACCEL_PY" ] || ACCEL_PY=python3
[ -d "$RUN/final" ] || { echo "speculators_check: $RUN has no final/ (finish \`accel train eagle3\` first)" >&2; exit 2; }

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import speculators" 2>/dev/null; then
  echo "creating $VENV (torch 2.13.0 + speculators 0.9.0) ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -m pip install -q "speculators==0.9.0" 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c "import speculators" || { echo "speculators_check: installing speculators failed" >&2; exit 1; }
fi

WORK=$(mktemp -d /tmp/speculators-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

OMP_NUM_THREADS=1 "$ACCEL_PY" - "$RUN" "$WORK" <<'EOF'
import sys, torch
from pathlib import Path
from safetensors.torch import save_file
from accel.recipes.eagle3.export import export
from accel.recipes.eagle3.train import target_forward
from accel.recipes.eagle3.inference import load_draft
from accel.decoding.checkpoint import load_checkpoint
from accel.models.backbone import load_backbone

run, work = Path(sys.argv[1]), Path(sys.argv[2])
export(run, work / "spec", format="speculators")
ck = load_checkpoint(export(run, work / "accel"))
adapter = load_backbone(ck.backbone_target(), device="cpu")
draft = load_draft(ck, adapter).float()
tok = adapter.tokenizer
ids = torch.tensor([tok("sort 9 3 5 1 7 and copy 4 2", add_special_tokens=False)["input_ids"]])
T = ids.shape[1]
valid, pos = torch.ones(1, T, dtype=torch.bool), torch.arange(T)[None]
feats, _, _ = target_forward(adapter.model, draft.feature_layers, ids, valid, pos)
nxt = torch.cat([ids[:, 1:], torch.full((1, 1), adapter.pad_id)], 1)  # x_{t+1} paired with the features at t
emb = adapter.model.get_input_embeddings()(nxt)
with torch.no_grad():
    logits = draft.unroll(feats.float(), emb.float(), valid, pos, 3)
save_file({"hidden_states": feats.float().contiguous(), "input_ids": nxt, "position_ids": pos,
           **{f"logits{k}": l.contiguous() for k, l in enumerate(logits)}}, str(work / "ref.safetensors"))
EOF

OMP_NUM_THREADS=1 "$VENV/bin/python" - "$WORK" <<'EOF'
import sys, warnings, torch
warnings.filterwarnings("ignore")
from pathlib import Path
from safetensors.torch import load_file
from speculators.models.eagle3 import Eagle3DraftModel, Eagle3SpeculatorConfig

work = Path(sys.argv[1])
cfg = Eagle3SpeculatorConfig.from_pretrained(str(work / "spec"))
cfg.transformer_layer_config._attn_implementation = "eager"  # CPU: no flex attention
model = Eagle3DraftModel.from_pretrained(str(work / "spec"), config=cfg, torch_dtype=torch.float32).eval()
ref = load_file(str(work / "ref.safetensors"))
seen = []
model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
T = ref["input_ids"].shape[1]
with torch.no_grad():
    model(hidden_states=ref["hidden_states"], input_ids=ref["input_ids"], document_ids=torch.zeros(1, T, dtype=torch.long),
          position_ids=ref["position_ids"], ttt_steps=3)
# Step k at position t is fed the token x_{t+1+k}; for the last k positions that lies past the sequence, and
# the two implementations pad differently there (speculators: token 0; accel: the last token). Those logits
# are never used (both trainers drop them from the loss; decoding feeds drafted tokens), so only positions
# t < T-1-k are compared.
diff = max(float((seen[k].float() - ref[f"logits{k}"])[:, :T - 1 - k].abs().max()) for k in range(3))
from importlib.metadata import version
print(f"speculators {version('speculators')}: loaded {work / 'spec'}; "
      f"3 unroll steps x {T} positions x {seen[0].shape[-1]} draft tokens; max abs diff {diff:.3e}")
sys.exit(0 if diff <= 1e-4 else 1)
EOF
