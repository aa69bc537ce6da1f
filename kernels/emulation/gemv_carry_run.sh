#!/usr/bin/env bash
# Builds and runs gemv_carry_check.cpp (gemv.cu's carried norm, gemv_*_addcarry → gemv_*_carry, against
# gemv → add_rms_norm → gemv on the CPU emulator) for bf16 and fp16 and two widths (the producer's n, the
# consumers' k): 1032 (16-byte vectors; main and tail loops) and 777 (not a multiple of 8: the producer
# only). Then, unless SELFTEST=0, once more (bf16, 1032, m = 2) on a copy of gemv.cu whose consumers read
# 4·Σ h²: that run must fail. The configurations run side by side; about a minute and a half on 2 cores.
# Not part of CI. KILN_GEMV_SRC=path checks another copy of gemv.cu (e.g. a deliberately broken one);
# WIDTHS="2056 …" other widths (2056 also runs r2u8w4's main loop in the consumer: a minute more).
set -euo pipefail
cd "$(dirname "$0")"
source ./dyn_shared.sh
gemv_workdir
run_cfg() {  # name dtype width source-copy [m ...]: builds and runs one configuration, output in $out/name.log
  local name=$1 dt=$2 width=$3 src=$4
  shift 4
  g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I.. -DKILN_DTYPE_$dt -DWIDTH=$width -DGEMV_ACT=1 -DKILN_GEMV_SRC="\"$src\"" gemv_carry_check.cpp \
    -o "$out/$name" -lpthread >"$out/$name.log" 2>&1 || { echo "BUILD FAILED" >>"$out/$name.log"; return 1; }
  "$out/$name" "$@" >>"$out/$name.log" 2>&1
}
names=() pids=()
for dt in BF16 F16; do
  for width in ${WIDTHS:-1032 777}; do
    run_cfg "${dt}_$width" $dt $width "$out/gemv.cu" &
    names+=("${dt}_$width") pids+=($!)
  done
done
if [ "${SELFTEST:-1}" = 1 ]; then
  # The consumers' Σ h² load scaled by 4 (rstd halved).
  sed 's/__ldcg(c\.sumsq + lane)/4.0 * __ldcg(c.sumsq + lane)/' "$out/gemv.cu" >"$out/broken.cu"
  if cmp -s "$out/gemv.cu" "$out/broken.cu"; then
    selftest=stale  # the mutation no longer applies
  else
    run_cfg broken BF16 1032 "$out/broken.cu" 2 &
    selftest=$!
  fi
fi
status=0
for i in "${!names[@]}"; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  echo "== ${names[$i]/_/ WIDTH }"
  cat "$out/${names[$i]}.log"
  [ $rc = 0 ] || status=1
done
if [ "${SELFTEST:-1}" = 1 ]; then
  echo "== self-test: BF16 WIDTH 1032 m 2 on a gemv.cu whose consumers read 4*sum h^2"
  if [ "$selftest" = stale ]; then
    echo "the mutation no longer applies (carry_begin's __ldcg(c.sumsq + lane) changed?): FAIL"
    status=1
  elif wait "$selftest"; then
    cat "$out/broken.log"
    echo "the broken copy PASSES the check: FAIL"
    status=1
  else
    grep -v 'self-test' "$out/broken.log"
    if grep -q 'BUILD FAILED' "$out/broken.log"; then status=1; else echo "the broken copy fails the check, as it must"; fi
  fi
fi
[ $status = 0 ] && echo PASS || echo FAIL
exit $status
