#!/usr/bin/env bash
# CPU benchmarks of gridflow against pandapower and lightsim2grid; prints the tables of bench/RESULTS.md.
#
#   bash bench/run_cpu.sh              # wait for a quiet machine, run everything (~5-8 min on 2 cores)
#   bash bench/run_cpu.sh --table-only # only print the tables of the last run
#
# Environment: GRIDFLOW_BENCH_OUT (default out/bench) for the JSON files; BENCH_MAX_LOAD (default 1.2)
# and BENCH_WAIT_S (default 600): before starting, wait while the 1-minute load average is above
# BENCH_MAX_LOAD, checking every 60 s, at most BENCH_WAIT_S; GRIDFLOW_BENCH_CASES /
# GRIDFLOW_BENCH_BATCH_CASES / GRIDFLOW_BENCH_QUICK: see bench/conftest.py.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
OUT=${GRIDFLOW_BENCH_OUT:-$ROOT/out/bench}
mkdir -p "$OUT"

if [ "${1:-}" != "--table-only" ]; then
    python3 -c "import numba" 2>/dev/null || { echo "run_cpu: numba is missing (pip install numba)"; exit 2; }
    max_load=${BENCH_MAX_LOAD:-1.2}
    waited=0
    while awk -v m="$max_load" '{exit !($1 > m)}' /proc/loadavg && [ "$waited" -lt "${BENCH_WAIT_S:-600}" ]; do
        echo "run_cpu: load average $(cut -d' ' -f1-3 /proc/loadavg) above $max_load; waiting 60 s"
        sleep 60
        waited=$((waited + 60))
    done
    uptime | tee "$OUT/load_before.txt"
    date -u +"%Y-%m-%dT%H:%M:%SZ" > "$OUT/date.txt"
    PYTEST=(python3 -m pytest -p no:cacheprovider -W ignore -q --benchmark-sort=name
            --benchmark-columns=median,min,max,rounds)
    # 1. everything, default environment (OpenBLAS picks its own thread count)
    "${PYTEST[@]}" bench/test_bench_single.py bench/test_bench_batch.py --benchmark-json="$OUT/cpu.json" \
        > "$OUT/pytest_cpu.log" 2>&1
    echo "run_cpu: pytest (all) exit $?; log in $OUT/pytest_cpu.log"
    uptime | tee "$OUT/load_mid.txt"
    # 2. gridflow's single solves again with OpenBLAS single-threaded (see RESULTS.md: F @ F)
    OPENBLAS_NUM_THREADS=1 "${PYTEST[@]}" bench/test_bench_single.py \
        -k "(test_gridflow_solve and not first) or newton_and_stages" \
        --benchmark-json="$OUT/cpu_blas1.json" > "$OUT/pytest_cpu_blas1.log" 2>&1
    echo "run_cpu: pytest (OPENBLAS_NUM_THREADS=1) exit $?; log in $OUT/pytest_cpu_blas1.log"
    uptime | tee "$OUT/load_after.txt"
fi

python3 - "$OUT" <<'EOF'
"""Markdown tables from the pytest-benchmark JSON files."""
import json
import os
import sys

out = sys.argv[1]


def load(name):
    path = os.path.join(out, name)
    if not os.path.isfile(path):
        return None
    with open(path) as fh:
        return json.load(fh)


main = load("cpu.json")
if main is None:
    sys.exit(f"no {out}/cpu.json: run bench/run_cpu.sh first")
blas1 = load("cpu_blas1.json")
meta = main.get("gridflow_bench", {})
m = meta.get("machine", {})


def txt(name):
    p = os.path.join(out, name)
    return open(p).read().strip() if os.path.isfile(p) else "?"


print(f"date {txt('date.txt')}; CPU {m.get('cpu')}, nproc {m.get('nproc')}")
print(f"load before: {txt('load_before.txt')}")
print(f"load mid:    {txt('load_mid.txt')}")
print(f"load after:  {txt('load_after.txt')}")
print("versions: " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()))
print("set-up (s): " + json.dumps({k: {a: round(b, 2) for a, b in v.items()} for k, v in meta.get("setup", {}).items()}))


def rows(data):
    return [] if data is None else [(b["extra_info"], b["stats"]) for b in data["benchmarks"]]


def f(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"


def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}"


single = [(e, s) for e, s in rows(main) if "T" not in e and e["variant"] != "solve_busy_neighbour"]
busy = [(e, s) for e, s in rows(main) if e.get("variant") == "solve_busy_neighbour"]
batch = [(e, s) for e, s in rows(main) if "T" in e]
single_b1 = rows(blas1)
cases = list(dict.fromkeys(e["case"] for e, _ in single))

order = ["load_case", "solve", "solve_first", "newtonpf", "runpp", "runpp_default_init", "runpp_ls2g_auto",
         "NRSing_KLU_repeat", "NRSing_KLU_first", "LSGrid.ac_pf"]
print("\n### Single case: median wall time per call (ms)\n")
print("speed-up columns: the peer's median / this row's median (> 1: this row is faster); others' cores busy:")
print("CPU used by other processes while the benchmark ran, in cores of the machine's", m.get("nproc"), "\n")
print("| case | tool | variant | tol | converged | iterations | median ms | runpp / this | ls2g NRSing_KLU / this "
      "| others' cores busy |")
print("|---|---|---|---|---|---|---|---|---|---|")
for c in cases:
    rs = [(e, s) for e, s in single if e["case"] == c]
    pp_ref = next((s["median"] for e, s in rs if e["variant"] == "runpp"), None)
    ls_ref = next((s["median"] for e, s in rs if e["variant"] == "NRSing_KLU_repeat"), None)
    extra = [(dict(e, variant=e["variant"] + " [OPENBLAS_NUM_THREADS=1]"), s) for e, s in single_b1
             if e["case"] == c]
    for e, s in sorted(rs, key=lambda r: (order.index(r[0]["variant"]), r[0].get("tol_label") == "default")) + extra:
        if e["variant"] == "load_case":
            tol = "-"
        elif "tol_mva" in e:
            tol = f"{e['tol_mva']:g} MVA"
        else:
            tol = f"{e.get('tol_pu', 0):g} pu"
        cell = "-" if e["variant"] == "load_case" else ratio(pp_ref, s["median"])
        cell2 = "-" if e["variant"] == "load_case" else ratio(ls_ref, s["median"])
        print(f"| {c} ({e['nb']}) | {e['tool']} | {e['variant']} | {tol} | {e.get('converged', '-')} | "
              f"{e.get('iterations', '-')} | {f(1e3 * s['median'])} | {cell} | {cell2} | {e.get('others_cores_busy', '-')} |")

print("\n### gridflow stages (ms, medians; 'first' = only on a topology's first solve, "
      "'iter' = once per Newton iteration)\n")
stage_rows = [(e, s) for e, s in single if e["variant"] == "newtonpf"]
for label, src in (("default environment", stage_rows),
                   ("OPENBLAS_NUM_THREADS=1", [(e, s) for e, s in single_b1 if e["variant"] == "newtonpf"])):
    if not src:
        continue
    print(f"{label}:\n")
    print("| stage | " + " | ".join(f"{e['case']} ({e['iterations']} it)" for e, _ in src) + " |")
    print("|---|" + "---|" * len(src))
    for k in src[0][0]["stages_ms"]:
        print(f"| {k} | " + " | ".join(f(e["stages_ms"].get(k), 2) for e, _ in src) + " |")
    print()

if busy:
    print("### One core busy in another process (a spinning child process started by the benchmark)\n")
    print("| case | iterations | gridflow solve, default OpenBLAS (ms) | gridflow solve, OPENBLAS_NUM_THREADS=1 (ms) "
          "| ls2g NRSing_KLU (ms) | others' cores busy |")
    print("|---|---|---|---|---|---|")
    for e, s in busy:
        print(f"| {e['case']} ({e['nb']}) | {e['iterations']} | {f(1e3 * s['median'])} | {f(e['openblas1_median_ms'])} "
              f"| {f(e['ls2g_nrsing_median_ms'])} | {e.get('others_cores_busy', '-')} |")
    print()

print("### Batch: T scenarios from the base solution, threads = 2 (median ms per call)\n")
print("| case | T | tool | variant | tol | converged | Newton it. mean/max | chord steps mean | median ms | "
      "ms / scenario | gridflow ms / scen. excl. base solve | runpp loop / this | ls2g repeat / this | "
      "max dVm vs gridflow (pu) | others' cores busy |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in dict.fromkeys((e["case"], e["T"]) for e, _ in batch):
    rs = [(e, s) for e, s in batch if (e["case"], e["T"]) == key]
    pp_ref = next((s["median"] for e, s in rs if e["tool"] == "pandapower"), None)
    ls_ref = next((s["median"] for e, s in rs if e["variant"] == "InjectionSweepCPP_repeat"), None)
    for e, s in rs:
        T = e["T"]
        tol = f"{e['tol_mva']:g} MVA" if "tol_mva" in e else f"{e['tol_pu']:g} pu"
        dvm = f"{e['dvm_vs_gridflow_pu']:.1e}" if "dvm_vs_gridflow_pu" in e else "-"
        excl = f((1e3 * s["median"] - e["base_solve_ms"]) / T, 2) if "base_solve_ms" in e else "-"
        print(f"| {key[0]} ({e['nb']}) | {T} | {e['tool']} | {e['variant']} | {tol} | {e['converged']}/{T} | "
              f"{e['newton_iterations_mean']:.1f}/{e['newton_iterations_max']} | "
              f"{e.get('chord_steps_mean', '-')} | {f(1e3 * s['median'])} | {f(1e3 * s['median'] / T, 2)} | "
              f"{excl} | {ratio(pp_ref, s['median'])} | {ratio(ls_ref, s['median'])} | "
              f"{dvm} | {e.get('others_cores_busy', '-')} |")
base = {(e["case"], e["T"], e.get("tol_label")): e["base_solve_ms"] for e, _ in batch if "base_solve_ms" in e}
if base:
    print("\ngridflow base-case solve inside each solve_batch call (ms): "
          + ", ".join(f"{c} T={T} {t}: {v:.0f}" for (c, T, t), v in base.items()))
EOF
