#!/usr/bin/env bash
# Regenerate the default model and the fidelity fixtures on the GPU machine, in one call.
#   tools/regenerate_on_device.sh DATA OUTDIR [extra args for train_default_model.py]
# Writes OUTDIR/{train.log, fixtures.log, inspect.txt, default_model.tar, fixtures.tar}.
# SKIP_TRAIN=1 reuses models/default instead of training a new default model.
set -uo pipefail
DATA=${1:?usage: $0 DATA OUTDIR [train args]}
OUTDIR=${2:?usage: $0 DATA OUTDIR [train args]}
shift 2
export PYTHONUNBUFFERED=1
W=$(mktemp -d)
rc1=0
if [ "${SKIP_TRAIN:-0}" = 1 ]; then
  DM=models/default
else
  DM=$W/default
  python3 tools/train_default_model.py --data "$DATA" --out "$DM" "$@" 2>&1 | tee "$OUTDIR/train.log"
  rc1=$?
  # int4-awq's and fp8-static's default calibration text (the corpus's first 12 KB, inside the training
  # split whatever the weights) ships with the model: keep it in the new one.
  cp models/default/calibration.txt "$DM/"
  tar -C "$W" -cf "$OUTDIR/default_model.tar" default
fi
python3 tools/make_fixtures.py --data "$DATA" --default-model "$DM" --out "$W/fixtures" 2>&1 | tee "$OUTDIR/fixtures.log"
rc2=$?
cp "$W/fixtures/inspect.txt" "$OUTDIR/" 2>/dev/null
tar -C "$W" -cf "$OUTDIR/fixtures.tar" fixtures
echo "train rc=$rc1 fixtures rc=$rc2"
[ "$rc1" = 0 ] && [ "$rc2" = 0 ]
