#!/usr/bin/env bash
# Issue 19's accuracy study, one device call (`bash tools/device_trust.sh quant-study`): trains the
# quant-study model (tools/train_default_model.py --preset quant-study, about 4 minutes on an H200; a
# model already in $QS_WORK is reused), then `kiln eval --perplexity` on its held-out speeches on the
# CPU backend for bf16 (the reference) and each format of tools/quant_study_table.py (fp8, int8-wo,
# int4-wo, int4-awq and fp8-static calibrated on training speeches, FP8 KV cache), all at once.
# Prints one line per format (ratio to bf16, the bound, PASS/FAIL; "not available" where this
# kiln has no such flag) and writes $OUT/quant_study.md, the table for docs/QUANTIZATION.md.
# Everything ends within QS_BUDGET_S (570) seconds of the start.
#
# Settings (environment): QS_WORK (/tmp/quant-study: model, texts, engine caches), QS_DATA (the corpus;
# tools/.cache/tinyshakespeare.txt, else ../shared/data/), QS_TOKENS (2048 held-out tokens scored),
# QS_WINDOW (256, the training length: --max-length and --stride), QS_DTYPE (fp32), QS_TRAIN_LIMIT_S (300).
# Dry run without torch or a GPU, on a model that exists (nothing is trained):
#   QS_MODEL=models/default QS_HELD_OUT=test/fixtures/quantization/held_out.txt OUT=/tmp/qs bash tools/quant_study.sh
# (QS_CALIBRATION=FILE gives int4-awq its text; without it kiln's default calibration text is used.)
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
t_end=$((SECONDS + ${QS_BUDGET_S:-570}))
work=${QS_WORK:-/tmp/quant-study}
tokens=${QS_TOKENS:-2048} window=${QS_WINDOW:-256}
mkdir -p "$work"
export PYTHONUNBUFFERED=1

train_log=""
if [[ -n ${QS_MODEL:-} ]]; then
  model=$QS_MODEL held=${QS_HELD_OUT:?QS_MODEL needs QS_HELD_OUT} calib=${QS_CALIBRATION:-}
  echo "quant-study: model $model as it is (QS_MODEL), held-out text $held"
else
  model=$work/model held=$work/held_out.txt calib=$work/calibration.txt train_log=$out/train.log
  if [[ -f $model/model.safetensors && -s $held && -s $calib ]]; then
    echo "quant-study: reusing the model in $model"
    train_log=$work/train.log
  else
    data=${QS_DATA:-tools/.cache/tinyshakespeare.txt}
    [[ -f $data ]] || data=../shared/data/tinyshakespeare.txt
    if [[ ! -f $data ]]; then
      echo "quant-study: no corpus: carry tools/.cache (tools/README.md) or set QS_DATA"
      exit 1
    fi
    rm -rf "$model" "$model.partial" "$held" "$calib"
    t0=$SECONDS
    timeout "${QS_TRAIN_LIMIT_S:-300}" python3 tools/train_default_model.py --preset quant-study --data "$data" \
      --out "$model.partial" --held-out "$held" --calibration-out "$calib" >"$train_log" 2>&1
    rc=$?
    echo "quant-study: training exit $rc in $((SECONDS - t0)) s; $(grep -E '^(model:|selected run)' "$train_log" | tr '\n' ' ')"
    if [[ $rc != 0 ]]; then
      tail -n 15 "$train_log"
      exit 1
    fi
    mv "$model.partial" "$model" && cp "$train_log" "$work/train.log" && cp "$model/README.md" "$out/model_card.md"
  fi
fi

res=$work/results
rm -rf "$res" && mkdir -p "$res"
common=(--model "$model" --perplexity "$held" --max-tokens "$tokens" --max-length "$window" --stride "$window"
  --dtype "${QS_DTYPE:-fp32}" --backend cpu --json)
# A flag this kiln does not have fails at parsing; a missing text file fails after it with EvalTextError.
one() { # name flags...
  local name=$1 probe left t0=$SECONDS
  shift
  probe=$(./bin/kiln eval "${common[@]}" --perplexity "$work/no-such-file.txt" "$@" 2>&1 >/dev/null)
  if [[ $probe != *EvalTextError* ]]; then
    printf '%s\n' "$probe" >"$res/$name.na"
    return
  fi
  left=$((t_end - SECONDS - 20))
  if ((left < 10)); then
    echo "no time left" >"$res/$name.err" && echo 124 >"$res/$name.rc"
    return
  fi
  timeout "$left" ./bin/kiln eval "${common[@]}" --cache-dir "$work/cache-$name" "$@" >"$res/$name.json" 2>"$res/$name.err"
  echo $? >"$res/$name.rc"
  echo $((SECONDS - t0)) >"$res/$name.seconds"
}
t0=$SECONDS
while IFS=$'\t' read -r -a f; do
  one "${f[@]}" </dev/null &
done < <(python3 tools/quant_study_table.py formats ${calib:+--calibration "$calib"})
wait
echo "quant-study: evaluations took $((SECONDS - t0)) s"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 tools/quant_study_table.py table "$res" --md "$out/quant_study.md" --model-dir "$model" \
  ${train_log:+--train-log "$train_log"} \
  --note "Held-out text \`$held\`: at most its first $tokens tokens, windows of $window (stride $window), CPU backend, --dtype ${QS_DTYPE:-fp32}; kiln $commit, $(date -u +%Y-%m-%d)."
tar -C "$work" -cf "$out/quant_study_results.tar" results # one file: the device returns few
echo
cat "$out/quant_study.md"
