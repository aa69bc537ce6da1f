# Sourced by the emulator run scripts. dyn_shared SRC DST: copies a kernel source with each
# `extern __shared__ T name[];` rewritten to KILN_DYN_SHARED(T, name) (fakecuda.h), which
# `#define __shared__ static` cannot emulate.
dyn_shared() {
  sed -E 's/extern[[:space:]]+__shared__[[:space:]]+(__align__\([0-9]+\)[[:space:]]+)?([^;[]*[^[:alnum:]_[:space:]][[:space:]]*|[^;[]*[[:space:]])([[:alnum:]_]+)[[:space:]]*\[[[:space:]]*\][[:space:]]*;/KILN_DYN_SHARED(\2, \3);/' "$1" >"$2"
}
