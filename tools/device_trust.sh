#!/usr/bin/env bash
# The device calls that close the trust issue (15), one summary line per figure; logs under $OUT.
#   ab       the attention kernels' profiles and A/Bs on the 1B and their GPU tests, for a short device
#            budget: decode attention at batch 256 (attention_decode_mma), the prefill of 4 × 2,048,
#            TTFT with a cached prefix with the prefill attention's key split and without
#   tests    the GPU tests (npm run test:gpu, which fails when it ran none), with the Hugging Face
#            fixture generators (beam search, chat) on the CPU beside them: $OUT/gen/beam, $OUT/chat
#   engines  Llama-3.1-8B through the content cache (a miss that builds it, a hit, the engine dir's load
#            + first token twice, `kiln verify`), a flipped bit in the cached 1B engine (reported in one
#            line and rebuilt), TPOT and prefill of both shapes against their floors, and the CLI's
#            exit code when its reader closes the pipe (`kiln run | head -c 16`)
#   final    one call for the closing figures: the GPU tests, then the 8B's checkpoint and build, verify,
#            load + first token twice, and TPOT of the 8B and the 1B (`final perf`: without the tests)
#   tests FILE...  only those GPU test files, with the whole call's time
#   load     the 8B alone: `kiln build --output`, `kiln verify`, the engine dir's load + first token
#            three times (the checksums are checked on worker threads during the upload)
#   throughput  the 8B through the executor (`kiln bench --num-requests`, all requests at once) at the
#            issue's ISL/OSL pairs on an engine built for 1,024 running requests and 8,192 tokens a
#            step: `throughput` (short) 128/128, 2048/128, then Poisson arrivals at about 70% of the
#            128/128 request rate (p99 TPOT against the median), with Hugging Face continuous batching
#            (tools/bench_hf_cb.py) on the same 128/128 requests, and TTFT with a 2,048-token prefix cached;
#            `throughput long` 1000/1000, 128/2048;
#            `throughput hf` Hugging Face at 2048/128 and 1000/1000
#   headline the 8B built for the executor (1,024 requests, 8,192 tokens a step: its build time), its
#            batch-1 TPOT, 128/128 and 2048/128 through the executor, and the 1B's batch-1 TPOT
#   profile  `kiln bench --profile` on the same engine at batch 256 and 1,024, 4 × 2,048 tokens, and
#            batch 192 after 2,048-token prompts: 2048/128's decode steps; 256 × 2,048 do not fit an
#            H100's KV pool): the prefill's and a decode step's GPU time by kernel kind (`profile prefill`:
#            4 × 2,048 alone; remove /tmp/engine-llama-3.1-8b-throughput first to A/B a kernel change); `profile ncu`: the
#            decode step at batch 256 × 128 kernel by kernel under Nsight Compute (tools/ncu_decode.sh)
#   attn-ab  AB_BASE=path: batch-1 TPOT of the 8B bf16 engine built from the tree's attention_decode.cu
#            against one built from AB_BASE (the base's copy of it), interleaved, and their stages
#   kv8-ab   AB_BASE=path: the FP8-pool decode attention (attention_decode_mma.cu) of the tree against
#            AB_BASE's, on the bf16 8B built for the executor from each: the decode step at 256 and 1,024
#            rows with FP8 KV by kernel kind, and 128/128 at 1,024 requests with FP8 KV, interleaved
#   attn-stages  batch-1 decode attention inside the 8B bf16 graph: TPOT with KILN_ATTN_STOP=wait|keys|partials,
#            left out, with the global merge, then its Nsight detail
#   long     the 8B built for 33,024-token contexts: TTFT at 8,192 and 32,768 prompt tokens, TPOT at that
#            context, and `kiln bench --profile` of the 32,768-token prefill and a decode step after it
#            (`long prefill`: the prefill kernel's GPU test, TTFT at 32,768 and 8,192, and its Nsight
#            detail on the last 8,192-row chunk;
#            `long decode`: batch-1 TPOT at 128, 8,192 and 32,768 tokens and 8 × 4,096 on that engine, each
#            also with KILN_ROPE_FUSE=0, and a 32,768-token decode step's attention and RoPE by kernel)
#   hostprof 128/128 at 1,024 requests on the same engine under `node --cpu-prof`: where the host's part of
#            an iteration goes (tools/cpuprofile_top.py; the profiles stay under $OUT/cpuprof)
#   serve    `kiln serve` on the same 8B engine driven by `kiln bench --serve` (1,024 requests at 128/128,
#            and 64 concurrent streams: ITL against the in-process decode step at batch 64); `serve prof`:
#            the 1,024 requests alone, the server under `node --cpu-prof` (where its host time goes); plain
#            `serve` ends with Hugging Face's continuous batching at 128/128 (the baseline, same call)
#   quant    weight-only quantization on CUDA (issue 19): the quantized GPU tests (test/gpu/quantized.test.ts,
#            test/gpu/kernels/gemv_wo.test.ts; int4-zp: test/gpu/kernels/gemv_zp.test.ts and the AWQ/GPTQ
#            fixtures, test/gpu/prequantized.test.ts), then the 8B built with --quantize int8-wo and int4-wo from
#            the same random-weight checkpoint, batch-1 TPOT and prefill of each against its floor (the
#            bytes each format reads: q, fp32 scales, the bf16 LM head), beside the bf16 engine's;
#            `quant tests`, `quant zp`, `quant int8-wo`, `quant int4-wo`: one piece, when the whole runs past
#            a call; `quant fp8` (not in the whole): fp8's GPU tests (test/gpu/kernels/gemv_fp8.test.ts,
#            test/gpu/fp8.test.ts: the FP8 GEMM plans and errors), then the 8B built with --quantize fp8
#            (build time: goal ≤ 90 s), batch-1 TPOT (gemv_fp8_bits, then KILN_FP8_GEMV=mma: gemv_fp8_mma,
#            KILN_FP8_GEMV=fma: gemv_fp8, then KILN_GEMV=0: the FP8 GEMM) and
#            prefill against its floor, then 1,024 requests at 128/128 through the executor with the KV
#            cache in bf16 and in FP8 (goal ≥ 31,000 output tok/s), all in one 600 s call; the
#            quantized GPU tests (`quant tests`) include fp8's too; `quant fp8-speed`: the same without
#            the tests, then tools/ncu_decode.sh's kernel-by-kernel batch-1 step, gemv_fp8_mma and gemv_fp8_bits;
#            `quant fp8-tp`: the build, 128/128 at 1,024 requests (bf16 and FP8 KV), then `kiln bench
#            --profile` of the fp8 engine's decode step at batch 256 and 1,024 (FP8 KV);
#            `quant fp8-b1`: gemv_fp8.cu's GPU tests, the build, batch-1 TPOT on the default (gemv_fp8_mma),
#            gemv_fp8_bits and gemv_fp8;
#            `quant b1-prof`: fp8.test.ts, then batch-1 TPOT and tools/ncu_decode.sh of the fp8 and int4-wo
#            engines (where each step's time goes, kernel by kernel);
#            `quant s25b`: gemv_wo + gemv_zp GPU tests, then int4-wo batch-1 TPOT (twice), its 128-token prefill by
#            kernel kind (`kiln bench --profile`) and its decode step kernel by kernel (`quant s25b-short`:
#            without the last);
#            `quant gemm` (not in the whole): gemm_wo.cu's GPU tests, then the 8B int8-wo and int4-wo engines'
#            TPOT at batch 16, 64 and 256 with KILN_WO_GEMM_MAX_M=0 (dequantize + cuBLASLt) and the default
#            (gemm_wo), one after the other on the same engine;
#            `quant awq` (not in the whole): test/gpu/awq_cuda.test.ts (the CUDA path's AWQ against the CPU's),
#            then the 8B built with --backend cuda --quantize int4-awq (goal ≤ 300 s): the build time with
#            the calibration forward, scale search and clip search split out (`kiln build --json`'s
#            awq.ms), then its batch-1 TPOT and prefill against the floor
# Usage (device run, carry .device and .devnm, made by tools/pack_device_modules.sh):
#   mkdir -p node_modules && tar -xJf .devnm/nm.tar.xz -C node_modules && source .device/prelude.sh && bash tools/device_trust.sh tests|engines|load|final|throughput [long|hf]|serve|quant|quant-study
set -uo pipefail
source tools/device_engine.sh
disk_room 20 # an 8B bf16 engine's room (15 GiB) and some: each build below makes its own too
part=${1:?usage: $0 tests|engines|load|final|headline|profile|long|long decode|throughput|serve|quant|quant-study}
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

# quant-study: issue 19's accuracy table (tools/quant_study.sh): trains the quant-study model, then held-out
# perplexity of bf16, fp8, int8-wo, int4-wo, int4-awq and the FP8 KV cache on the CPU backend, and writes
# $OUT/quant_study.md. Carry tools/.cache too (the corpus; tools/README.md).
if [[ $part == quant-study ]]; then
  OUT=$out bash tools/quant_study.sh
  exit $?
fi

if [[ $part == tests && $# -gt 1 ]]; then # tests FILE...: those GPU test files alone, the whole call
  shift
  timeout 560 node scripts/test.mjs gpu "$@" >"$out/test_gpu.log" 2>&1
  echo "test:gpu $* exit $?"
  grep -E "^ℹ (tests|pass|fail|skipped)" "$out/test_gpu.log" | tr '\n' ' '
  echo
  grep -E "^✖|AssertionError|run twice|fused vs unfused|worst" "$out/test_gpu.log" | head -40
  exit 0
fi
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
# ab: the attention kernels on the 1B (32 / 8 heads of 64) when little device time is left — decode attention
# at batch 256 (attention_decode_mma) and the prefill of 4 × 2,048 tokens
# (mma4), the attention line of each profile; TTFT with 2,048 of 2,176 tokens
# cached with the prefill attention's key split and without (KILN_PREFILL_SPLIT=0); then the kernels' GPU tests.
if [[ $part == ab ]]; then
  ckpt=/tmp/hf-$small e=/tmp/engine-$small-ab
  [[ -d $ckpt ]] || python3 tools/bench_hf.py --config "configs/$small" --out "$ckpt" >"$out/hf-$small-make.log" 2>&1
  [[ -d $e ]] || ./bin/kiln build --model "$ckpt" --output "$e" --backend cuda --dtype bf16 --max-batch-size 256 \
    --max-num-tokens 8192 --max-seq-len 4096 >"$out/build-ab.log" 2>&1 || echo "1B build failed (build-ab.log)"
  for run in "decode mma|256|128|" "prefill mma4|4|2048|"; do
    IFS='|' read -r label b i env <<<"$run"
    f="$out/ab-${label// /-}.txt"
    env $env ./bin/kiln bench --model "$e" --backend cuda --batch-size "$b" --input-len "$i" --output-len 16 --runs 1 \
      --profile >"$f" 2>>"$out/bench.err" || echo "$label: bench failed (bench.err)"
    echo "$label: $(grep -E '^TPOT|^TTFT' "$f" | tr -s ' ' | tr '\n' ' ')"
    grep -E "^(decode step GPU time|prefill GPU time)|^  attention|^  rope" "$f"
  done
  # Issue 17 (TTFT with 2,048 tokens cached ≤ 20% of cold): 128 new rows over 2,176 keys, split and not.
  for run in "prefix split|" "prefix unsplit|KILN_PREFILL_SPLIT=0"; do
    IFS='|' read -r label env <<<"$run"
    f="$out/ab-${label// /-}.json"
    env $env timeout 120 ./bin/kiln bench --model "$e" --backend cuda --json --num-requests 8 --input-len 2176 \
      --prefix-len 2048 --output-len 8 >"$f" 2>>"$out/bench.err" || echo "$label: bench failed (bench.err)"
    python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['prefixCache']; print('%s: TTFT %.2f ms with %d of %d tokens cached, %.2f ms cold (x%.3f)' % (sys.argv[2], p['cachedTtftMs'], p['cachedTokens'], p['prefixLen'], p['coldTtftMs'], p['cachedOverCold']))" \
      "$f" "$label" 2>/dev/null
  done
  timeout 240 node scripts/test.mjs gpu test/gpu/kernels/attention_decode_mma.test.ts \
    test/gpu/kernels/attention_prefill_kernels.test.ts test/gpu/kernels/attention_prefill_split.test.ts \
    >"$out/test_gpu.log" 2>&1
  echo "tests: exit $?"
  grep -E "^ℹ (tests|pass|fail)|^✖|AssertionError" "$out/test_gpu.log" | head -20
  exit 0
fi
if [[ $part == final ]]; then
  if [[ ${2:-} != perf ]]; then # `final perf`: the figures alone (the GPU tests in calls of their own)
    timeout 330 node scripts/test.mjs gpu >"$out/test_gpu.log" 2>&1
    echo "test:gpu exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_gpu.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError" "$out/test_gpu.log" | head -10
  fi
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
build_exec() { # $1 = engine dir, $2 = log name: the 8B bf16 built for the executor (1,024 sequences,
  # 8,192 tokens a step), from /tmp/hf-$big, unless it is there
  [[ -d $1 ]] || ./bin/kiln build --model "/tmp/hf-$big" --output "$1" --backend cuda --dtype bf16 --max-batch-size 1024 \
    --max-num-tokens 8192 --max-seq-len 4096 --json >"$out/build-$2.json" 2>"$out/build-$2.err"
}
if [[ $part == quant ]]; then
  which=${2:-all}
  if [[ $which == all || $which == tests ]]; then
    timeout 420 node scripts/test.mjs gpu test/gpu/quantized.test.ts test/gpu/kernels/gemv_wo.test.ts \
      test/gpu/fp8.test.ts test/gpu/kernels/gemv_fp8.test.ts >"$out/test_quant.log" 2>&1
    echo "quantized GPU tests exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_quant.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError|worst" "$out/test_quant.log" | head -20
  fi
  if [[ $which == all || $which == zp ]]; then
    timeout 300 node scripts/test.mjs gpu test/gpu/kernels/gemv_zp.test.ts test/gpu/prequantized.test.ts \
      >"$out/test_zp.log" 2>&1
    echo "int4-zp GPU tests exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_zp.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError|worst" "$out/test_zp.log" | head -20
  fi
  if [[ $which == gemm ]]; then
    timeout 300 node scripts/test.mjs gpu test/gpu/kernels/gemm_wo.test.ts >"$out/test_gemm.log" 2>&1
    echo "gemm_wo GPU tests exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_gemm.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError" "$out/test_gemm.log" | head -20
  fi
  if [[ $which == awq ]]; then
    timeout 420 node scripts/test.mjs gpu test/gpu/awq_cuda.test.ts >"$out/test_awq.log" 2>&1
    echo "AWQ GPU test exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_awq.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError|phases ms|mean KL" "$out/test_awq.log" | head -20
  fi
  [[ $which == tests || $which == zp ]] && exit 0
  ckpt=/tmp/hf-$big
  make_ckpt() { [[ -d $ckpt ]] || python3 tools/bench_hf.py --config "configs/$big" --out "$ckpt" >"$out/hf-$big-make.log" 2>&1; }
  build_fp8() { # $1 = engine dir: the 8B fp8 engine, sized for the executor (timed: goal ≤ 90 s)
    local t0
    t0=$(date +%s%N)
    [[ -d $1 ]] || ./bin/kiln build --model "$ckpt" --output "$1" --backend cuda --dtype bf16 --quantize fp8 \
      --max-batch-size 1024 --max-num-tokens 8192 --max-seq-len 4096 --json >"$out/build-fp8.json" 2>"$out/build-fp8.err"
    echo "$big fp8 kiln build: exit $? in $(ms "$t0") ms (goal ≤ 90000; build-fp8.err)"
  }
  fp8_tp() { # $1 = the fp8 engine: 128/128 at 1,024 requests, the KV cache in the engine dtype and in FP8
    local kv f
    for kv in auto fp8; do
      f="$out/tp-fp8-128_128-kv-$kv.json"
      timeout 150 ./bin/kiln bench --model "$1" --backend cuda --json --num-requests 1024 --input-len 128 \
        --output-len 128 --kv-cache-dtype "$kv" >"$f" 2>>"$out/throughput-fp8.err" ||
        echo "fp8 128/128 kv $kv: bench failed or timed out"
      python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('fp8 128/128 kv %-4s %8.0f out tok/s (goal ≥ 31000)  TPOT %.2f/%.2f ms (median/p99)' % (sys.argv[2], d['outputTokensPerSec'], d['tpotMs']['median'], d['tpotMs']['p99']))" "$f" "$kv"
    done
  }
  build_wo() { # $1 = int8-wo | int4-wo: the 8B built with it (timed) into /tmp/engine-$big-$1, once a machine
    local t0
    t0=$(date +%s%N)
    [[ -d /tmp/engine-$big-$1 ]] || ./bin/kiln build --model "$ckpt" --output "/tmp/engine-$big-$1" --backend cuda \
      --dtype bf16 --quantize "$1" --json >"$out/build-$1.json" 2>"$out/build-$1.err"
    echo "$big $1 kiln build: exit $? in $(ms "$t0") ms (build-$1.err)"
  }
  if [[ $which == fp8-speed ]]; then # the figures alone (the tests in a call of their own), then where a
    # batch-1 step's time goes, kernel by kernel, on the default (gemv_fp8_mma in this bf16 engine) and on
    # gemv_fp8_bits (tools/ncu_decode.sh)
    make_ckpt
    bash "$0" quant fp8-figures
    ENGINE=/tmp/engine-$big-fp8 bash tools/ncu_decode.sh "$big" 4 128 last
    ENGINE=/tmp/engine-$big-fp8 TAG=bits KILN_FP8_GEMV=bits bash tools/ncu_decode.sh "$big" 4 128 last
    exit 0
  fi
  if [[ $which == fp8-b1 ]]; then # where fp8's batch 1 stands: gemv_fp8.cu's GPU tests (the checkpoint
    # written beside them), the build, then batch-1 TPOT on each decode GEMV: the default (a bf16
    # engine's: the tensor-core gemv_fp8_mma), then KILN_FP8_GEMV=bits (gemv_fp8_bits, fp32 engines'
    # default) and fma (gemv_fp8 everywhere)
    make_ckpt &
    ckpt_pid=$!
    timeout 200 node scripts/test.mjs gpu test/gpu/kernels/gemv_fp8.test.ts >"$out/test_fp8.log" 2>&1
    echo "gemv_fp8 GPU tests exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_fp8.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError" "$out/test_fp8.log" | head -20
    wait "$ckpt_pid"
    e=/tmp/engine-$big-fp8
    build_fp8 "$e"
    bench "$big fp8 decode" "$e" "${decode[@]}"
    for kind in bits fma; do
      KILN_FP8_GEMV=$kind bench "$big fp8 decode $kind" "$e" "${decode[@]}"
    done
    exit 0
  fi
  short=0
  [[ $which == s25b-short ]] && which=s25b short=1  # without the Nsight part
  if [[ $which == s25b ]]; then # after s25: the int4 GEMVs' GPU tests (gemv_wo4_mma's gated kernel on the
    # plain kernel's chunks; gemv_zp_mma's first run) beside the checkpoint's writing, then int4-wo's
    # batch-1 TPOT on its one GEMV, and its decode step kernel by kernel (tools/ncu_decode.sh)
    make_ckpt &
    ckpt_pid=$!
    timeout 170 node scripts/test.mjs gpu test/gpu/kernels/gemv_wo.test.ts test/gpu/kernels/gemv_zp.test.ts >"$out/test_int4.log" 2>&1
    echo "gemv_wo + gemv_zp GPU tests exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_int4.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError" "$out/test_int4.log" | head -10
    wait "$ckpt_pid"
    build_wo int4-wo
    bench "$big int4-wo decode" /tmp/engine-$big-int4-wo "${decode[@]}"
    bench "$big int4-wo decode again" /tmp/engine-$big-int4-wo "${decode[@]}"
    # TTFT at 128 prompt tokens is ~3x bf16's: the 128-token prefill's GPU time by kernel (gemm_wo.cu's
    # tensor-core GEMM straight from the int4 bytes runs its linears)
    ./bin/kiln bench --model /tmp/engine-$big-int4-wo --backend cuda --batch-size 1 --input-len 128 --output-len 16 \
      --runs 1 --profile >"$out/profile-int4-128.txt" 2>>"$out/bench.err" || echo "int4 profile failed (bench.err)"
    sed -n '/^decode step GPU time/,$p' "$out/profile-int4-128.txt" | head -40
    KILN_WO_GEMM_MAX_M=0 bench "$big int4-wo dequant+cuBLASLt" /tmp/engine-$big-int4-wo --input-len 128 --output-len 16
    [[ $short == 1 ]] && exit 0
    ENGINE=/tmp/engine-$big-int4-wo bash tools/ncu_decode.sh "$big" 4 128 last  # its step kernel by kernel
    exit 0
  fi
  if [[ $which == b1-prof ]]; then # batch 1 kernel by kernel for fp8 and int4-wo (issue 19's 1.48x and
    # 2.32x): fp8's engine test (its rederived bf16 bound) beside the checkpoint's writing, the fp8 build,
    # TPOT and tools/ncu_decode.sh on the default decode GEMV; then int4-wo's build, TPOT and ncu
    make_ckpt &
    ckpt_pid=$!
    timeout 200 node scripts/test.mjs gpu test/gpu/fp8.test.ts >"$out/test_fp8.log" 2>&1
    echo "fp8 engine GPU test exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_fp8.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError|worst \|Δ logit" "$out/test_fp8.log" | head -20
    wait "$ckpt_pid"
    e=/tmp/engine-$big-fp8
    build_fp8 "$e"
    bench "$big fp8 decode" "$e" "${decode[@]}"
    ENGINE=$e bash tools/ncu_decode.sh "$big" 4 128 last
    e=/tmp/engine-$big-int4-wo
    build_wo int4-wo
    bench "$big int4-wo decode" "$e" "${decode[@]}"
    ENGINE=$e bash tools/ncu_decode.sh "$big" 4 128 last
    exit 0
  fi
  [[ $which == fp8-figures ]] && which=fp8 && skip_tests=1
  if [[ $which == fp8 && -z ${skip_tests:-} ]]; then
    # fp8's GPU tests first (each FP8 GEMM plan cuBLASLt gave, the errors against the accumulation model
    # and the engines' |Δ logit|), with the checkpoint written beside them (CPU and disk only), so the
    # speed figures below still fit the call; nothing timed overlaps the tests.
    make_ckpt &
    ckpt_pid=$!
    timeout 240 node scripts/test.mjs gpu test/gpu/kernels/gemv_fp8.test.ts test/gpu/fp8.test.ts \
      >"$out/test_fp8.log" 2>&1
    echo "fp8 GPU tests exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_fp8.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError|refused|FP8 GEMM plans|2⁻¹³|worst \|Δ logit" "$out/test_fp8.log" | head -80
    wait "$ckpt_pid"
  else
    make_ckpt
  fi
  if [[ $which == awq ]]; then
    # int4-awq tokenizes its calibration text with the checkpoint's tokenizer; the random-weight
    # checkpoint has none. The bundled model's serves (every id it gives is a row of the 8B's embedding),
    # its vocabulary padded with unreachable tokens <xN> to the 8B's 128,256 ids so that the benches can
    # detokenize what the random model samples (an id outside a tokenizer is refused: TokenizerError).
    # A copy of the checkpoint (its files linked) keeps the others' cache keys.
    tok=/tmp/hf-$big-awq
    mkdir -p "$tok" && ln -sf "$ckpt"/* "$tok"/ && rm -f "$tok"/tokenizer*.json
    cp models/default/tokenizer.json models/default/tokenizer_config.json "$tok"/
    python3 -c 'import json,sys; p=sys.argv[1]; t=json.load(open(p)); v=t["model"]["vocab"]; v.update({f"<x{i}>": i for i in range(len(v), int(sys.argv[2]))}); json.dump(t, open(p, "w"))' \
      "$tok/tokenizer.json" 128256
    e=/tmp/engine-$big-int4-awq
    rm -rf "$e"
    t0=$(date +%s%N)
    ./bin/kiln build --model "$tok" --output "$e" --backend cuda --dtype bf16 --quantize int4-awq \
      --json >"$out/build-awq.json" 2>"$out/build-awq.err"
    echo "$big int4-awq kiln build --backend cuda: exit $? in $(ms "$t0") ms (goal ≤ 300000; build-awq.err)"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); a=d['awq']; m=a['ms']; g=[x for x in a['groups'] if 'alpha' in x]; print('  AWQ kernels %.0f ms, calibration forward %.0f ms (%d tokens), scale search %.0f ms, clip search %.0f ms; engine kernels + GEMM tuning %.0f ms; %d groups searched, mean alpha %.3f, clipped %d' % (m.get('kernels', 0), m['calibration'], a['tokens'], m['scaleSearch'], m['clipSearch'], 1000 * d.get('targetSeconds', 0), len(g), sum(x['alpha'] for x in g) / max(1, len(g)), sum(x.get('clipped', 0) for x in a['groups'])))" \
      "$out/build-awq.json" || echo "  no awq record (build-awq.err)"
    bench "$big int4-awq decode" "$e" "${decode[@]}"
    bench "$big int4-awq prefill 2048" "$e" --input-len 2048 --output-len 2 --runs 3
    exit 0
  fi
  if [[ $which == fp8 || $which == fp8-tp ]]; then # one engine sized for the executor serves all three
    e=/tmp/engine-$big-fp8
    build_fp8 "$e"
  fi
  if [[ $which == fp8-tp ]]; then # issue 19's 128/128 at 1,024 requests, then where its decode step goes
    fp8_tp "$e"
    for b in 256 1024; do # the decode step by kernel kind (eager columns), FP8 KV
      ./bin/kiln bench --model "$e" --backend cuda --batch-size $b --input-len 128 --output-len 16 --runs 1 \
        --kv-cache-dtype fp8 --profile >"$out/profile-fp8-$b.txt" 2>>"$out/bench.err" ||
        echo "fp8 profile batch $b failed (bench.err)"
      echo "fp8, batch $b:" && cat "$out/profile-fp8-$b.txt"
    done
    exit 0
  fi
  if [[ $which == fp8 ]]; then
    bench "$big fp8 decode" "$e" "${decode[@]}" # a bf16 engine: gemv_fp8_mma (KILN_FP8_GEMV=auto)
    # Batch 1 on the CUDA-core GEMVs: gemv_fp8_bits (fp32 engines' default) and gemv_fp8_r2uUw4 (the
    # same bits, with conversions).
    KILN_FP8_GEMV=bits bench "$big fp8 decode bits" "$e" "${decode[@]}"
    KILN_FP8_GEMV=fma bench "$big fp8 decode fma" "$e" "${decode[@]}"
    # Batch 1 on the FP8 GEMM (cuBLASLt, outer-vector scales, the 16-row bucket) instead of a GEMV.
    KILN_GEMV=0 bench "$big fp8 decode gemm" "$e" "${decode[@]}"
    bench "$big fp8 prefill 2048" "$e" --input-len 2048 --output-len 2 --runs 3
    fp8_tp "$e"
    exit 0
  fi
  formats=(int8-wo int4-wo)
  [[ $which == all || $which == gemm ]] || formats=("$which")
  for q in "${formats[@]}"; do
    e=/tmp/engine-$big-$q
    build_wo "$q"
    if [[ $which == gemm ]]; then # TPOT at batch 16, 64, 256: dequantize + cuBLASLt, then gemm_wo
      for bs in 16 64 256; do
        KILN_WO_GEMM_MAX_M=0 bench "$big $q batch $bs dequant" "$e" --batch-size "$bs" --input-len 128 --output-len 128
        bench "$big $q batch $bs gemm_wo" "$e" --batch-size "$bs" --input-len 128 --output-len 128
      done
      continue
    fi
    bench "$big $q decode" "$e" "${decode[@]}"
    bench "$big $q prefill 2048" "$e" --input-len 2048 --output-len 2 --runs 3
  done
  [[ $which == gemm ]] || bench "$big bf16 decode" "$(engine $big)" "${decode[@]}"
  exit 0
fi
if [[ $part == throughput || $part == serve || $part == headline || $part == profile || $part == hostprof ]]; then
  ckpt=/tmp/hf-$big e=/tmp/engine-$big-throughput
  [[ -d $ckpt ]] || python3 tools/bench_hf.py --config "configs/$big" --out "$ckpt" >"$out/hf-$big-make.log" 2>&1
  t0=$(date +%s%N)
  build_exec "$e" throughput
  echo "$big throughput engine: exit $? in $(ms "$t0") ms"
  tp() { # label seconds flags...
    local label=$1 limit=$2 f="$out/tp-${1//[ \/]/_}.json"
    shift 2
    timeout "$limit" ./bin/kiln bench --model "$e" --backend cuda --json "$@" >"$f" 2>>"$out/throughput.err" ||
      { echo "$label: bench failed or timed out (throughput.err)"; return; }
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); e=d['executor']; print('%-22s %8.0f out tok/s %8.0f total tok/s %6.2f req/s  TTFT %.1f/%.1f ms  TPOT %.2f/%.2f ms (median/p99)  ITL p99 %.2f ms  tokens %d  iters %d  preempt %d  peak KV %.0f%%' % (sys.argv[2], d['outputTokensPerSec'], d['totalTokensPerSec'], d['requestsPerSec'], d['ttftMs']['median'], d['ttftMs']['p99'], d['tpotMs']['median'], d['tpotMs']['p99'], d['itlMs']['p99'], d['outputTokens'], e['iterations'], e['preemptions'], 100*e['peakKvUsage']))" \
      "$f" "$label"
  }
  hf() { # label seconds flags...: Hugging Face continuous batching on the same requests
    local label=$1 limit=$2 f="$out/hf-${1//[ \/]/_}.json"
    shift 2
    timeout "$limit" python3 tools/bench_hf_cb.py --model "$ckpt" "$@" >"$f" 2>>"$out/hf-cb.err" ||
      { echo "HF $label: failed or timed out (hf-cb.err)"; return; }
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('HF %-19s %8.0f out tok/s %8.0f total tok/s  TTFT %.1f/%.1f ms  TPOT %.2f/%.2f ms (median/p99)  %s' % (sys.argv[2], d['outputTokensPerSec'], d['totalTokensPerSec'], d['ttftMs']['median'], d['ttftMs']['p99'], d['tpotMs']['median'], d['tpotMs']['p99'], d['engine']))" \
      "$f" "$label"
  }
  if [[ $part == profile && ${2:-} == ncu ]]; then # batch 256's decode step kernel by kernel, serialised:
    # each kernel's own time, without PDL's overlap that the eager --profile columns count
    # (step 21 on: the 256 rows' prefill chunks are done by step 6; 292 kernels a decode step)
    # (DRAM bytes and active warps too: which kernels are short of bandwidth, which of occupancy)
    ENGINE=$e BENCH_BATCH=256 NCU_FLAGS="--launch-skip 6000 --launch-count 600" \
      NCU_METRICS=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,sm__warps_active.avg.pct_of_peak_sustained_active \
      bash tools/ncu_decode.sh "$big" 48 128 rows=256
    # then decode attention's full report at batch 256 (launch 641 of attention_decode_mma: ~20 steps in)
    ENGINE=$e OUTPUT_LEN=48 bash tools/ncu_kernel.sh attention_decode_mma 256 128 640
    exit 0
  fi
  if [[ $part == profile ]]; then # where a decode step's GPU time goes at the executor's batch sizes
    # batch, input: decode at 256 / 1,024; 2048/128's prefill and its decode at ~2,100 tokens of context
    # (192 sequences: 256 × 2,048 tokens do not fit an H100's KV pool)
    shapes=("256 128" "1024 128" "4 2048" "192 2048")
    [[ ${2:-} == prefill ]] && shapes=("4 2048") # `profile prefill`: the prefill alone (an A/B of its kernel)
    for shape in "${shapes[@]}"; do
      read -r b i <<<"$shape"
      ./bin/kiln bench --model "$e" --backend cuda --batch-size $b --input-len $i --output-len 16 --runs 1 \
        --profile >"$out/profile-$b-$i.txt" 2>>"$out/bench.err" || echo "profile $b × $i failed (bench.err)"
      echo "batch $b, input $i:"
      cat "$out/profile-$b-$i.txt"
    done
    exit 0
  fi
  if [[ $part == headline ]]; then # one engine for batch 1 and for load: the figures of issues 16 and 17
    bench "$big decode (executor engine)" "$e" "${decode[@]}"
    tp "128/128" 120 --num-requests 1024 --input-len 128 --output-len 128
    tp "2048/128" 120 --num-requests 256 --input-len 2048 --output-len 128
    bench "$small decode" "$(engine $small)" "${decode[@]}" # its build may remove the 8B engine (disk_room)
    exit 0
  fi
  if [[ $part == hostprof ]]; then # the host's share of 128/128 at 1,024 requests, under the V8 profiler
    rm -rf "$out/cpuprof" && mkdir -p "$out/cpuprof"
    timeout 200 node --cpu-prof --cpu-prof-dir="$out/cpuprof" --import "file://$PWD/node_modules/tsx/dist/esm/index.mjs" \
      src/cli/main.ts bench --model "$e" --backend cuda --json --num-requests 1024 --input-len 128 --output-len 128 \
      >"$out/tp-hostprof.json" 2>>"$out/throughput.err" || echo "hostprof: bench failed (throughput.err)"
    python3 tools/cpuprofile_top.py "$out"/cpuprof/*.cpuprofile | head -60
    exit 0
  fi
  if [[ $part == serve ]]; then # in-process first: the server then takes the GPU's free memory for KV
    # `serve http`: the HTTP runs alone (in-process figures of the same day); `serve prof`: the 1,024-stream
    # run alone with the server under the V8 profiler, its self time by function after it exits.
    mode=${2:-}
    if [[ $mode != http && $mode != prof ]]; then
      tp "128/128 in-process" 120 --num-requests 1024 --input-len 128 --output-len 128
      tp "batch 64 in-process" 120 --num-requests 64 --input-len 128 --output-len 256
    fi
    # The stats line every 2 s (wait_ms near 0 while tokens flow: the host, not the GPU, set the pace).
    kiln=(./bin/kiln)
    if [[ $mode == prof ]]; then
      rm -rf "$out/cpuprof" && mkdir -p "$out/cpuprof"
      kiln=(node --cpu-prof --cpu-prof-dir="$out/cpuprof" --import "file://$PWD/node_modules/tsx/dist/esm/index.mjs"
        src/cli/main.ts)
    fi
    "${kiln[@]}" serve --model "$e" --backend cuda --port 8321 --log-level info --log-stats-interval 2 \
      >"$out/serve.log" 2>&1 &
    pid=$!
    get() { python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())" "$1"; }
    for _ in $(seq 240); do get http://127.0.0.1:8321/health >/dev/null 2>&1 && break; sleep 0.5; done
    echo "kiln serve: $(head -n 1 "$out/serve.log")"
    sv() { # label seconds flags...
      local label=$1 limit=$2 f="$out/serve-${1//[ \/]/_}.json"
      shift 2
      timeout "$limit" ./bin/kiln bench --serve http://127.0.0.1:8321 --json "$@" >"$f" 2>>"$out/serve-bench.err" ||
        { echo "serve $label: failed (serve-bench.err)"; return; }
      python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('HTTP %-20s all %d failed: %s' % (sys.argv[2], d['failed'], d['errors'][:1]) if d['completed'] == 0 else 'HTTP %-20s %8.0f out tok/s  TTFT %.1f/%.1f ms  TPOT %.2f/%.2f ms  ITL %.2f/%.2f ms (median/p99)  peak streaming %d  failed %d' % (sys.argv[2], d['outputTokensPerSec'], d['ttftMs']['median'], d['ttftMs']['p99'], d['tpotMs']['median'], d['tpotMs']['p99'], d['itlMs']['median'], d['itlMs']['p99'], d.get('peakStreaming', -1), d['failed']))" \
        "$f" "$label"
    }
    sv "128/128" 150 --num-requests 1024 --input-len 128 --output-len 128
    [[ $mode == prof ]] || sv "64 streams" 150 --num-requests 256 --max-concurrency 64 --input-len 128 --output-len 256
    python3 -c "
import json, sys
for l in open(sys.argv[1]):
    if '\"msg\":\"stats\"' in l:
        d = json.loads(l)
        print('  stats %4.1f s: %7.0f prompt tok/s %7.0f gen tok/s  %3d iters  step %.2f host %.2f wait %.2f ms  running %d waiting %d  KV %.0f%%' % (d['interval_s'], d['prompt_tokens_per_s'], d['generation_tokens_per_s'], d['iterations'], d['step_ms'], d['host_ms'], d['wait_ms'], d['running'], d['waiting'], 100 * d['kv_cache_usage']))
" "$out/serve.log"
    get http://127.0.0.1:8321/metrics | grep -E "^kiln:(generation_tokens_total|request_success_total)" | head -5
    kill -TERM $pid
    wait $pid
    echo "kiln serve after SIGTERM: exit $?"
    [[ $mode == prof ]] && python3 tools/cpuprofile_top.py "$out"/cpuprof/*.cpuprofile | head -60
    # Hugging Face's continuous batching on the same requests and GPU once the server is gone (issue 18's
    # baseline in the same call; bench_hf_cb.py: transformers' generate_batch, in-process).
    [[ -z $mode ]] && hf "128/128" 200 --num-requests 1024 --input-len 128 --output-len 128
    exit 0
  fi
  if [[ ${2:-short} == hf ]]; then # Hugging Face at the other pairs, in a call of its own
    hf "2048/128" 200 --num-requests 256 --input-len 2048 --output-len 128
    hf "1000/1000" 330 --num-requests 256 --input-len 1000 --output-len 1000
    exit 0
  fi
  if [[ ${2:-short} == long ]]; then # each call stays within the device's 10 minutes
    tp "1000/1000" 200 --num-requests 256 --input-len 1000 --output-len 1000
    tp "128/2048" 200 --num-requests 256 --input-len 128 --output-len 2048
    exit 0
  fi
  tp "128/128" 120 --num-requests 1024 --input-len 128 --output-len 128
  hf "128/128" 150 --num-requests 1024 --input-len 128 --output-len 128
  tp "2048/128" 120 --num-requests 256 --input-len 2048 --output-len 128
  rate=$(python3 -c "import json,sys; print('%.2f' % (0.7 * json.load(open(sys.argv[1]))['requestsPerSec']))" \
    "$out/tp-128_128.json" 2>/dev/null)
  [[ -n $rate ]] && tp "128/128 at $rate req/s" 120 --num-requests 1024 --input-len 128 --output-len 128 \
    --request-rate "$rate" --seed 1
  # Prefix caching (issue 17: TTFT with 2,048 tokens cached ≤ 20% of cold): one request alone, both ways;
  # then the same with the prefill attention's key split off (the split's A/B: 128 new rows, 2,176 keys).
  tp "prefix 2048" 120 --num-requests 64 --input-len 2176 --prefix-len 2048 --output-len 32
  KILN_PREFILL_SPLIT=0 tp "prefix 2048 unsplit" 120 --num-requests 64 --input-len 2176 --prefix-len 2048 --output-len 32
  for label in "prefix 2048" "prefix 2048 unsplit"; do
    python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['prefixCache']; print('%s: TTFT %.2f ms with %d of %d tokens cached, %.2f ms cold (x%.3f)' % (sys.argv[2], p['cachedTtftMs'], p['cachedTokens'], p['prefixLen'], p['coldTtftMs'], p['cachedOverCold']))" \
      "$out/tp-${label// /_}.json" "$label" 2>/dev/null
  done
  exit 0
fi
if [[ $part == long ]]; then # issue 17's long prompts: TTFT at 8,192 and 32,768 tokens, decode at 32,768
  e=/tmp/engine-$big-long ckpt=/tmp/hf-$big
  if [[ ${2:-} == prefill ]]; then # the prefill kernel's GPU test beside the checkpoint's writing and
    # the engine's build
    timeout 200 node scripts/test.mjs gpu test/gpu/kernels/attention_prefill_kernels.test.ts >"$out/test_prefill.log" 2>&1 &
    test_pid=$!
  fi
  [[ -d $ckpt ]] || python3 tools/bench_hf.py --config "configs/$big" --out "$ckpt" >"$out/hf-$big-make.log" 2>&1
  t0=$(date +%s%N)
  [[ -d $e ]] || ./bin/kiln build --model "$ckpt" --output "$e" --backend cuda --dtype bf16 --max-batch-size 8 \
    --max-num-tokens 8192 --max-seq-len 33024 --json >"$out/build-long.json" 2>"$out/build-long.err"
  echo "$big long-context engine: exit $? in $(ms "$t0") ms"
  if [[ ${2:-} == decode ]]; then # decode over long contexts (split steps: attention_decode_mma at the
    # batch's most splits, attention_decode below): batch 1 at 128, 8,192 and 32,768 tokens of context,
    # 8 sequences at 4,096, and a 32,768-token decode step's attention and RoPE by kernel.
    # Each shape twice: the default (RoPE fused into whichever decode attention runs), then
    # KILN_ROPE_FUSE=0 (rope_qkv_fused as its own launch before it: what the fusion saves).
    for shape in "1 128 256" "1 8192 64" "1 32768 32" "8 4096 32"; do
      read -r b i o <<<"$shape"
      bench "b$b ${i} in" "$e" --batch-size "$b" --input-len "$i" --output-len "$o" --runs 1
      KILN_ROPE_FUSE=0 bench "b$b ${i} in rope apart" "$e" --batch-size "$b" --input-len "$i" --output-len "$o" --runs 1
    done
    ./bin/kiln bench --model "$e" --backend cuda --batch-size 1 --input-len 32768 --output-len 4 --runs 1 \
      --profile >"$out/profile-long.txt" 2>>"$out/bench.err" || echo "profile failed (bench.err)"
    echo "32,768 decode step: $(grep -E "decode step GPU time|^  attention|^  rope" "$out/profile-long.txt" | head -4 | tr -s ' ' | tr '\n' ';')"
    exit 0
  fi
  if [[ ${2:-} == prefill ]]; then # the prefill kernels at long prompts: TTFT at 32,768 and 8,192 tokens
    wait "$test_pid"
    echo "prefill kernels GPU test exit $?: $(grep -E "^ℹ (tests|pass|fail)" "$out/test_prefill.log" | tr '\n' ' ')"
    grep -E "^✖|AssertionError" "$out/test_prefill.log" | head -10
    # then attention_prefill's Nsight detail on the last chunk of a 32,768-token prompt (8,192 rows over
    # 32,768 keys: launch 96 + 31), its stall table printed (the report stays on the device)
    bench "$big 32,768 in" "$e" --input-len 32768 --output-len 4 --runs 2
    bench "$big 8,192 in" "$e" --input-len 8192 --output-len 4 --runs 2
    ENGINE=$e bash tools/ncu_kernel.sh 'attention_prefill$' 1 32768 127
    grep -A14 "Warp Stall" "$out/ncu-attention_prefill\$-1-32768.txt" | head -40
    exit 0
  fi
  bench "$big 8,192 in" "$e" --input-len 8192 --output-len 64 --runs 3
  bench "$big 32,768 in" "$e" --input-len 32768 --output-len 64 --runs 3
  # Where the time goes: the 32,768-token prefill (4 steps of 8,192) and a decode step at that context.
  ./bin/kiln bench --model "$e" --backend cuda --batch-size 1 --input-len 32768 --output-len 4 --runs 1 \
    --profile >"$out/profile-long.txt" 2>>"$out/bench.err" || echo "long profile failed (bench.err)"
  cat "$out/profile-long.txt"
  exit 0
fi
if [[ $part == kv8-ab ]]; then # an FP8-pool decode attention change timed against its base: AB_BASE is the
  # base's kernels/attention_decode_mma.cu (an untracked copy that travels with the tree); the bf16 8B
  # built for the executor from each, then the decode step by kernel kind at 256 and 1,024 rows with FP8
  # KV (bf16 KV once, for scale), and 128/128 at 1,024 requests with FP8 KV, interleaved
  base=${AB_BASE:?AB_BASE=the base attention_decode_mma.cu}
  ckpt=/tmp/hf-$big e=/tmp/engine-$big-throughput eb=/tmp/engine-$big-throughput-base
  [[ -d $ckpt ]] || python3 tools/bench_hf.py --config "configs/$big" --out "$ckpt" >"$out/hf-$big-make.log" 2>&1
  build_tp() { # $1 = engine dir
    local t0
    t0=$(date +%s%N)
    disk_room 20 "$e" "$eb"
    build_exec "$1" "$(basename "$1")" || echo "build $1 failed (build-$(basename "$1").err)"
    echo "built $1 in $(ms "$t0") ms"
  }
  build_tp "$e"
  cp kernels/attention_decode_mma.cu /tmp/attention-mma-tree.cu && cp "$base" kernels/attention_decode_mma.cu
  build_tp "$eb"
  cp /tmp/attention-mma-tree.cu kernels/attention_decode_mma.cu
  prof() { # label engine batch kv
    ./bin/kiln bench --model "$2" --backend cuda --batch-size "$3" --input-len 128 --output-len 16 --runs 1 \
      --kv-cache-dtype "$4" --profile >"$out/profile-$1-$3-$4.txt" 2>>"$out/bench.err" ||
      echo "profile $1 $3 $4 failed (bench.err)"
    echo "$1, batch $3, KV $4: $(grep -E "decode step GPU time|^  attention|^  rope" "$out/profile-$1-$3-$4.txt" | tr -s " " | tr "\n" ";")"
  }
  for kv in ${KV8_AB_KVS:-fp8}; do # KV8_AB_KVS="fp8 auto": bf16 pools' kernel too (a change to both)
    for b in 256 1024; do
      prof tree "$e" $b "$kv"
      prof base "$eb" $b "$kv"
    done
  done
  [[ ${KV8_AB_KVS:-fp8} == *auto* ]] || prof tree "$e" 256 auto
  for pass in ${KV8_AB_PASSES-1}; do # KV8_AB_PASSES="": no 128/128 runs
    for which in tree base; do
      d=$e && [[ $which == base ]] && d=$eb
      f="$out/tp-kv8-$which-$pass.json"
      timeout 150 ./bin/kiln bench --model "$d" --backend cuda --json --num-requests 1024 --input-len 128 \
        --output-len 128 --kv-cache-dtype fp8 >"$f" 2>>"$out/throughput.err" || echo "tp $which failed"
      python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%s 128/128 FP8 KV %8.0f out tok/s  TPOT %.2f/%.2f ms' % (sys.argv[2], d['outputTokensPerSec'], d['tpotMs']['median'], d['tpotMs']['p99']))" "$f" "$which pass $pass"
    done
  done
  exit 0
fi
if [[ $part == attn-ab ]]; then # a decode-attention change meant to keep the bits, timed against its base:
  # AB_BASE is the base's kernels/attention_decode.cu (an untracked copy that travels with the tree); the
  # 8B bf16 engine is built from each, then batch-1 TPOT of both twice, interleaved, and each with the
  # kernel stopped after its key loop and after its partials (KILN_ATTN_STOP: what the stage costs)
  base=${AB_BASE:?AB_BASE=the base attention_decode.cu}
  e=$(engine $big)
  eb=/tmp/engine-$big-base
  cp kernels/attention_decode.cu /tmp/attention-tree.cu && cp "$base" kernels/attention_decode.cu
  t0=$(date +%s%N)
  disk_room 20 "$e" # not the tree's engine, just built
  ./bin/kiln build --model /tmp/hf-$big --output "$eb" --backend cuda --dtype bf16 >"$out/build-base.log" 2>&1 ||
    echo "base engine build failed (build-base.log)"
  echo "base engine built in $(ms "$t0") ms"
  cp /tmp/attention-tree.cu kernels/attention_decode.cu
  for pass in 1 2; do
    bench "$big attn tree" "$e" "${decode[@]}"
    bench "$big attn base" "$eb" "${decode[@]}"
  done
  bench "$big attn tree 512 in" "$e" --input-len 512 --output-len 256
  bench "$big attn base 512 in" "$eb" --input-len 512 --output-len 256
  for stop in keys partials; do
    KILN_ATTN_STOP=$stop bench "$big attn tree stop $stop" "$e" "${decode[@]}"
    KILN_ATTN_STOP=$stop bench "$big attn base stop $stop" "$eb" "${decode[@]}"
  done
  exit 0
fi
if [[ $part == attn-stages ]]; then # where batch-1 decode attention's ~13 µs a layer go inside the graph
  # (8B bf16, 128 in / 256 out; profiling switches, wrong outputs): stopped after its PDL wait, after its
  # key loop, after its partials, left out, and with the global merge instead of the cluster's; then
  # the kernel alone under Nsight Compute (stall reasons)
  e=$(engine $big)
  bench "$big attn default" "$e" "${decode[@]}"
  for stop in wait keys partials; do KILN_ATTN_STOP=$stop bench "$big attn stop $stop" "$e" "${decode[@]}"; done
  skip=attention_decode_rope,attention_decode_rope_c2,attention_decode_rope_c4,attention_decode_rope_c8,attention_decode,attention_decode_c2,attention_decode_c4,attention_decode_c8
  KILN_SKIP_KERNELS=$skip bench "$big attn left out" "$e" "${decode[@]}"
  KILN_ATTN_CLUSTER=0 bench "$big attn global merge" "$e" "${decode[@]}"
  ENGINE=$e bash tools/ncu_kernel.sh attention_decode 1 128 40
  exit 0
fi
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
