#!/usr/bin/env bash
# The device calls that close the trust issue (15), one summary line per figure; logs under $OUT.
#   tests    the GPU tests (npm run test:gpu, which fails when it ran none), with the Hugging Face
#            fixture generators (beam search, chat) on the CPU beside them: $OUT/gen/beam, $OUT/chat
#   engines  Llama-3.1-8B through the content cache (a miss that builds it, a hit, the engine dir's load
#            + first token twice, `kiln verify`), a flipped bit in the cached 1B engine (reported in one
#            line and rebuilt), TPOT and prefill of both shapes against their floors, and the CLI's
#            exit code when its reader closes the pipe (`kiln run | head -c 16`)
#   final    one call for the closing figures: the GPU tests, then the 8B's checkpoint and build, verify,
#            load + first token twice, and TPOT of the 8B and the 1B
#   load     the 8B alone: `kiln build --output`, `kiln verify`, the engine dir's load + first token
#            three times (the checksums are checked on worker threads during the upload)
# Usage (device run, carry .device and .devnm):
#   mv .devnm node_modules; source .device/prelude.sh && bash tools/device_trust.sh tests|engines
set -uo pipefail
source tools/device_engine.sh
part=${1:?usage: $0 tests|engines|load|final}
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

if [[ $part == tests ]]; then
  (
    bash tools/regenerate_generation_fixtures.sh "$out/gen" >"$out/gen.log" 2>&1
    echo "fixtures: generation+beam exit $?" >"$out/fixtures.txt"
    python3 tools/make_chat_fixtures.py --out "$out/chat" >"$out/chat.log" 2>&1
    echo "fixtures: chat exit $?" >>"$out/fixtures.txt"
  ) &
  timeout 480 node scripts/test.mjs gpu >"$out/test_gpu.log" 2>&1
  echo "test:gpu exit $?"
  grep -E "^ℹ (tests|pass|fail|skipped)" "$out/test_gpu.log" | tr '\n' ' '
  echo
  grep -E "^✖|AssertionError" "$out/test_gpu.log" | head -20
  wait
  cat "$out/fixtures.txt"
  exit 0
fi

big=llama-3.1-8b small=llama-3.2-1b
if [[ $part == final ]]; then
  timeout 330 node scripts/test.mjs gpu >"$out/test_gpu.log" 2>&1
  echo "test:gpu exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_gpu.log" | tr '\n' ' ')"
  grep -E "^✖|AssertionError" "$out/test_gpu.log" | head -10
  e=$(engine $big)
  echo "$big kiln build --output: $(tail -n 1 "$out/build-times.txt")"
  t0=$(date +%s%N)
  ./bin/kiln verify "$e" >"$out/verify.txt" 2>&1
  echo "$big kiln verify: exit $? in $(ms "$t0") ms"
  for pass in 1 2; do
    t0=$(date +%s%N)
    ./bin/kiln run --model "$e" --backend cuda --input-ids 1,2,3 --max-new-tokens 1 --json >/dev/null 2>>"$out/run.err"
    echo "$big engine dir: load + first token, pass $pass: exit $? in $(ms "$t0") ms"
  done
fi
bench() { # label engine flags...
  local label=$1 dir=$2
  shift 2
  ./bin/kiln bench --model "$dir" --backend cuda --batch-size 1 --json "$@" >"$out/b.json" 2>>"$out/bench.err" ||
    { echo "$label: bench failed (bench.err)"; return; }
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%-28s TPOT %.3f ms (%.3fx floor %.3f)  TTFT %.2f ms (%.3fx its floor)  output tokens %s' % (sys.argv[2], d['tpotMs'], d['tpotOverFloor'], d['floorMs'], d['ttftMs'], d['ttftOverPrefillFloor'], d.get('outputTokens')))" \
    "$out/b.json" "$label"
  cp "$out/b.json" "$out/bench-${label// /_}.json"
}
decode=(--input-len 128 --output-len 256)
if [[ $part == final ]]; then
  bench "$big decode" "$e" "${decode[@]}"
  bench "$small decode" "$(engine $small)" "${decode[@]}"
  exit 0
fi
if [[ $part == load ]]; then
  t0=$(date +%s%N)
  e=$(engine $big)
  echo "$big checkpoint + kiln build --output: $(ms "$t0") ms ($(tail -n 1 "$out/build-times.txt"))"
  t0=$(date +%s%N)
  ./bin/kiln verify "$e" >"$out/verify.txt" 2>&1
  echo "$big kiln verify: exit $? in $(ms "$t0") ms: $(head -c 200 "$out/verify.txt")"
  for pass in 1 2 3; do
    t0=$(date +%s%N)
    ./bin/kiln run --model "$e" --backend cuda --input-ids 1,2,3 --max-new-tokens 1 --json >/dev/null 2>>"$out/run.err"
    echo "$big engine dir: load + first token, pass $pass: exit $? in $(ms "$t0") ms"
  done
  exit 0
fi

# engines
ckpt=/tmp/hf-$big
t0=$(date +%s%N)
[[ -d $ckpt ]] || python3 tools/bench_hf.py --config "configs/$big" --out "$ckpt" >"$out/hf-$big-make.log" 2>&1
echo "$big checkpoint written in $(ms "$t0") ms"
for pass in miss hit; do
  t0=$(date +%s%N)
  ./bin/kiln run --model "$ckpt" --backend cuda --dtype bf16 --input-ids 1,2,3 --max-new-tokens 1 --json \
    >"$out/run-$pass.json" 2>>"$out/run.err"
  rc=$?
  echo "$big kiln run on the checkpoint ($pass): exit $rc in $(ms "$t0") ms;" \
    "engine $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['engine'])" "$out/run-$pass.json" 2>&1)"
done
e=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['engine']['dir'])" "$out/run-hit.json")
for pass in 1 2; do
  t0=$(date +%s%N)
  ./bin/kiln run --model "$e" --backend cuda --input-ids 1,2,3 --max-new-tokens 1 --json >/dev/null 2>>"$out/run.err"
  echo "$big engine dir: load + first token (checksums verified during the upload), pass $pass: exit $? in $(ms "$t0") ms"
done
t0=$(date +%s%N)
./bin/kiln verify "$e" >"$out/verify.txt" 2>&1
echo "$big kiln verify: exit $? in $(ms "$t0") ms: $(head -c 300 "$out/verify.txt")"
bench "$big decode" "$e" "${decode[@]}"
bench "$big prefill 2048" "$e" --input-len 2048 --output-len 2 --runs 5
s=$(engine $small)
bench "$small decode" "$s" "${decode[@]}"
# A damaged cache entry: the 1B through the cache, one bit flipped in its largest weight, run again.
sckpt=/tmp/hf-$small
./bin/kiln run --model "$sckpt" --backend cuda --dtype bf16 --input-ids 1,2,3 --max-new-tokens 4 --json \
  >"$out/small-1.json" 2>>"$out/run.err"
sdir=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['engine']['dir'])" "$out/small-1.json")
python3 - "$sdir" <<'PY'
import json, struct, sys
path = sys.argv[1] + "/rank0.engine"
with open(path, "r+b") as f:
    pre = f.read(24)
    header = json.loads(f.read(struct.unpack("<Q", pre[16:24])[0]))
    w = max(header["weights"], key=lambda w: w["byteLength"])
    at = w["offset"] + w["byteLength"] // 2
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 0x10]))
print("flipped a bit of", w["name"], "at", at)
PY
t0=$(date +%s%N)
./bin/kiln run --model "$sckpt" --backend cuda --dtype bf16 --input-ids 1,2,3 --max-new-tokens 4 --json \
  >"$out/small-2.json" 2>"$out/small-2.err"
echo "$small after a flipped bit: exit $? in $(ms "$t0") ms; stderr: $(tr '\n' '|' <"$out/small-2.err")"
python3 -c "import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); print('same tokens as before the damage:', a['outputIds']==b['outputIds'], b['engine'])" \
  "$out/small-1.json" "$out/small-2.json"
./bin/kiln run --model "$s" --backend cuda --max-new-tokens 64 | head -c 16 >/dev/null
echo "kiln run --backend cuda | head -c 16: kiln exit ${PIPESTATUS[0]}"
