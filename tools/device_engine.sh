# Sourced by the device scripts (device_check.sh variants, ncu_decode.sh, batch_probe.sh): the output
# folder, the engine cache, and `engine CFG`, which makes the random-weight HF checkpoint of
# configs/CFG (tools/bench_hf.py) and its bf16 CUDA engine once per machine and prints the engine's
# directory.
out=${OUT:-/tmp/out}
mkdir -p "$out"
export KILN_CACHE_DIR=/tmp/kiln-cache

# disk_room GB [KEEP...]: removes engines under /tmp (/tmp/engine-*, but not the KEEP directories), least
# recently written first, until /tmp has GB GiB free. The machine's disk (64 GiB) holds about three 8B
# bf16 engines (15 GiB each) beside the checkpoint; a build that runs out of it fails half-way (ENOSPC) and costs the call. Removed engines are
# rebuilt by whichever part needs them.
disk_room() {
  local want=$1 free victim d
  shift
  while true; do
    free=$(df --output=avail -BG /tmp | tail -n 1 | tr -dc '0-9')
    ((free >= want)) && return 0
    victim=
    # shellcheck disable=SC2012 # engine directories: plain names
    for d in $(ls -dtr /tmp/engine-* 2>/dev/null); do
      [[ " $* " == *" $d "* ]] || { victim=$d; break; }
    done
    [[ -n $victim ]] || { echo "disk_room: ${free} GiB free in /tmp, no engine left to remove" >&2; return 1; }
    echo "disk_room: ${free} GiB free, removing $victim" | tee -a "$out/disk.txt" >&2
    rm -rf "$victim"
  done
}

engine() { # $1 = config name
  local cfg=$1 dir=/tmp/hf-$1 e=/tmp/engine-$1
  [[ -d $dir ]] || python3 tools/bench_hf.py --config "configs/$cfg" --out "$dir" >"$out/hf-$cfg-make.log" 2>&1
  if [[ ! -d $e ]]; then
    disk_room 20
    local t0=$SECONDS
    ./bin/kiln build --model "$dir" --output "$e" --backend cuda --dtype bf16 --json >"$out/kiln-$cfg-build.json" \
      2>"$out/kiln-$cfg-build.err"
    # The wall time, and of it the CUDA target's (kernels compiled, GEMMs tuned; the rest reads and writes weights).
    local target
    target=$(python3 -c "import json,sys; print('%.1f' % json.load(open(sys.argv[1])).get('targetSeconds', -1))" \
      "$out/kiln-$cfg-build.json" 2>/dev/null)
    echo "$cfg: kiln build $((SECONDS - t0)) s (kernels and GEMM tuning ${target:-?} s)" >>"$out/build-times.txt"
  fi
  echo "$e"
}
