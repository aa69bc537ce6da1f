# Sourced by the emulator run scripts (from kernels/emulation/). dyn_shared SRC DST: copies a kernel source with each
# `extern __shared__ T name[];` rewritten to KILN_DYN_SHARED(T, name) (fakecuda.h), which
# `#define __shared__ static` cannot emulate.
dyn_shared() {
  sed -E 's/extern[[:space:]]+__shared__[[:space:]]+(__align__\([0-9]+\)[[:space:]]+)?([^;[]*[^[:alnum:]_[:space:]][[:space:]]*|[^;[]*[[:space:]])([[:alnum:]_]+)[[:space:]]*\[[[:space:]]*\][[:space:]]*;/KILN_DYN_SHARED(\2, \3);/' "$1" >"$2"
}

# gemv_workdir: a temporary folder $out, removed when the script exits, holding gemv.cu ($KILN_GEMV_SRC,
# e.g. a deliberately broken copy, or ../gemv.cu) rewritten by dyn_shared as $out/gemv.cu.
gemv_workdir() {
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  dyn_shared "${KILN_GEMV_SRC:-../gemv.cu}" "$out/gemv.cu"
}

# emu_workdir SRC NAME: a temporary folder $out, removed when the script exits, holding the kernel SRC
# rewritten by dyn_shared as $out/NAME (the attention run scripts).
emu_workdir() {
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  dyn_shared "$(realpath "$1")" "$out/$2"
}

# emu_attention CHECK SRC_MACRO LABEL DT D BS H HKV: builds the check CHECK (a .cpp that includes the kernel
# copy $out/… named by SRC_MACRO, e.g. KILN_DECODE_MMA_SRC=mma.cu) for one shape (dtype, head dim, block
# size, heads, kv heads) with $EXTRA, runs it, and sets fail=1 when either fails.
emu_attention() {
  local check=$1 macro=${2%%=*} file=${2#*=} label=$3
  shift 3
  local exe="$out/${label}_$1_$2_$3_$4_$5"
  if ! g++ -std=c++20 -O2 -fno-strict-aliasing -ffp-contract=off -Ifake -I"$here/.." -DKILN_DTYPE_$1 -DHEAD_DIM=$2 \
      -DBLOCK_SIZE=$3 -DNUM_HEADS=$4 -DNUM_KV_HEADS=$5 -D"$macro"="\"$out/$file\"" ${EXTRA:-} \
      "$check" -o "$exe" -lpthread; then
    echo "$label $1 D=$2 BLOCK_SIZE=$3 H=$4/$5: BUILD FAILED"; fail=1; return
  fi
  "$exe" || fail=1
}
