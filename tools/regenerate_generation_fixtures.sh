#!/usr/bin/env bash
# Record transformers generate() with decoding settings on the committed checkpoints (one device call).
#   tools/regenerate_generation_fixtures.sh OUTDIR
# Writes OUTDIR/{default,llama3-bpe-trained,mistral-sp-trained,qwen3-bpe-trained}.json,
# OUTDIR/generation.log and OUTDIR/inspect_generation.txt (the transformers source the notes rely on).
# Runs on the CPU (4 threads); about a minute. Copy the JSON files into test/fixtures/generation/.
set -uo pipefail
OUTDIR=${1:?usage: $0 OUTDIR}
export PYTHONUNBUFFERED=1
mkdir -p "$OUTDIR"
python3 tools/make_generation_fixtures.py --out "$OUTDIR" --inspect "$OUTDIR/inspect_generation.txt" 2>&1 \
  | tee "$OUTDIR/generation.log"
rc=${PIPESTATUS[0]}
echo "make_generation_fixtures rc=$rc"
exit "$rc"
