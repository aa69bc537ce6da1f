#!/usr/bin/env bash
# Record transformers generate() with decoding settings on the committed checkpoints (one device call).
#   tools/regenerate_generation_fixtures.sh OUTDIR
# Writes OUTDIR/{default,llama3-bpe-trained,mistral-sp-trained,qwen3-bpe-trained}.json,
# OUTDIR/generation.log and OUTDIR/inspect_generation.txt (the transformers source the notes rely on),
# and OUTDIR/beam/beam_search_hf.json (tools/make_beam_fixtures.py) with OUTDIR/beam/beam.log.
# Runs on the CPU (4 threads); about a minute. Copy the JSON files into test/fixtures/generation/,
# and beam/beam_search_hf.json into test/fixtures/.
set -uo pipefail
OUTDIR=${1:?usage: $0 OUTDIR}
export PYTHONUNBUFFERED=1
mkdir -p "$OUTDIR"
python3 tools/make_generation_fixtures.py --out "$OUTDIR" --inspect "$OUTDIR/inspect_generation.txt" 2>&1 \
  | tee "$OUTDIR/generation.log"
rc=${PIPESTATUS[0]}
echo "make_generation_fixtures rc=$rc"
# The beam-search replay cases, in the same environment (a subfolder: generation/ takes every *.json).
mkdir -p "$OUTDIR/beam"
python3 tools/make_beam_fixtures.py --out "$OUTDIR/beam/beam_search_hf.json" 2>&1 | tee "$OUTDIR/beam/beam.log"
brc=${PIPESTATUS[0]}
echo "make_beam_fixtures rc=$brc"
[ "$rc" -ne 0 ] && exit "$rc"
exit "$brc"
