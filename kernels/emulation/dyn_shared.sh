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
