"""Shared set-up of the CPU benchmarks: one bundle per case, built once per session.

A bundle holds the same network in the three tools, solving the same equations from the same start:

* gridflow: the :class:`~gridflow.case.Case` (``gridflow.load_case(name)``), the start ``V0`` that
  ``solve(init="auto")`` tries first (``init="case"``: the stored voltages, generator setpoints at
  PV buses) and the reference solution.
* pandapower: for ``case9241pegase`` the ``pandapower.networks`` net itself; for the MATPOWER files
  ``pandapower.converter.pypower.from_ppc(matched_ppc(case))``. ``from_ppc`` of the plain
  ``to_ppc(case)`` solves a *different* model (the README's table: the first generator listed at
  a bus controls its voltage even when offline, and the tap is put at the high-voltage side);
  :func:`matched_ppc` removes both differences (online generators listed first; transformers
  whose from bus is the lower-voltage one written the other way round, exactly), after which
  pandapower reproduces gridflow to ~1e-12 pu. The bench checks that, per case.
* lightsim2grid, two ways: (1) its KLU Newton solver class ``NRSing_KLU`` called on gridflow's own
  Ybus, Sbus, V0, ref/pv/pq: identical equations and start, solver against solver; (2) its own
  network model ``LSGrid`` (``init_from_pandapower(net)`` for the pandapower case,
  ``init_from_matpower(to_ppc(case))`` for the .m files) with ``ac_pf(V0, max_iter, tol)``.

Environment variables:

* ``GRIDFLOW_BENCH_CASES``: comma-separated single-case list (default: the three below);
* ``GRIDFLOW_BENCH_BATCH_CASES``: cases of the batch benchmark (default: case9241pegase,case_ACTIVSg25k);
* ``GRIDFLOW_BENCH_QUICK=1``: one round everywhere (a smoke run, not for figures).
"""

from __future__ import annotations

import importlib
import logging
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import scipy.sparse as sp

import gridflow
from gridflow.network import make_sbus
from gridflow.start import initial_voltage
from gridflow.validate import to_ppc

#: gridflow's ``solve`` module (``gridflow.solve`` the attribute is the function)
gsolve = importlib.import_module("gridflow.solve")

ALL_CASES = ("case9241pegase", "case_ACTIVSg25k", "case_ACTIVSg70k")
BATCH_CASES_DEFAULT = ("case9241pegase", "case_ACTIVSg25k")
PEER_TOL_PU = 1e-8  # pandapower's tolerance_mva and lightsim2grid's tol: compared with the per-unit mismatch
MAX_ITER = 30
QUICK = os.environ.get("GRIDFLOW_BENCH_QUICK", "") not in ("", "0")

#: rounds per benchmark, by case and speed class ("fast": ~0.1 s a call, "slow": ~1 s a call)
_ROUNDS = {
    "case9241pegase": {"fast": 9, "slow": 5},
    "case_ACTIVSg25k": {"fast": 7, "slow": 3},
    "case_ACTIVSg70k": {"fast": 5, "slow": 2},
}


def rounds(name: str, kind: str = "fast") -> int:
    return 1 if QUICK else _ROUNDS.get(name, {"fast": 3, "slow": 1})[kind]


def _env_cases(var: str, default) -> list[str]:
    text = os.environ.get(var, "")
    return [c.strip() for c in text.split(",") if c.strip()] if text else list(default)


SINGLE_CASES = _env_cases("GRIDFLOW_BENCH_CASES", ALL_CASES)
BATCH_CASES = _env_cases("GRIDFLOW_BENCH_BATCH_CASES", BATCH_CASES_DEFAULT)


def gf_tol_mva(case, label: str) -> float:
    """gridflow's tol_mva: "peer" = the peers' 1e-8 pu expressed in MVA; "default" = gridflow's 1e-8 MVA."""
    return PEER_TOL_PU * case.base_mva if label == "peer" else 1e-8


# ---------------------------------------------------------------- model matching for from_ppc

def matched_ppc(case) -> dict:
    """``to_ppc(case)`` rewritten so that pandapower's ``from_ppc`` builds gridflow's (MATPOWER's) model.

    1. Generators: in-service ones first at every bus (stable order otherwise), because
       ``from_ppc`` gives a bus's voltage control to the first generator listed there.
    2. Branches with a transformer (tap or shift) or joining two voltage levels, whose from bus
       has the lower base kV: ``from_ppc`` puts the tap at the high-voltage side, MATPOWER at the
       from bus. Written the other way round (to -> from) with the equivalent parameters: for a
       tap ``N = tau e^{j theta}`` at the old from bus, the flipped branch has tap ``1 / tau``,
       shift ``-theta``, ``r, x`` times ``tau^2`` and charging ``b / tau^2``, which leaves the
       branch's 2x2 admittance block unchanged.
    """
    ppc = to_ppc(case)
    gen = ppc["gen"]
    ppc["gen"] = gen[np.lexsort((np.arange(len(gen)), gen[:, 7] <= 0))]
    br, bus = ppc["branch"], ppc["bus"]
    pos = {int(b): k for k, b in enumerate(bus[:, 0])}
    fkv = bus[[pos[int(b)] for b in br[:, 0]], 9]
    tkv = bus[[pos[int(b)] for b in br[:, 1]], 9]
    tap = np.where(br[:, 8] == 0, 1.0, br[:, 8])
    flip = (fkv < tkv) & ((br[:, 8] != 0) | (br[:, 9] != 0) | (fkv != tkv))
    old = br[flip].copy()
    t2 = tap[flip] ** 2
    br[flip, 0], br[flip, 1] = old[:, 1], old[:, 0]
    br[flip, 2], br[flip, 3], br[flip, 4] = old[:, 2] * t2, old[:, 3] * t2, old[:, 4] / t2
    br[flip, 8], br[flip, 9] = 1.0 / tap[flip], -old[:, 9]
    ppc["branch"] = br
    return ppc


# ---------------------------------------------------------------- bundles

@dataclass
class Bundle:
    """One case in every tool (see the module docstring)."""

    name: str
    case: object
    net: object
    V0: np.ndarray  # gridflow's first start, case bus order
    ref_V: np.ndarray  # gridflow's solution (tol 1e-8 pu), case bus order
    net_pos: np.ndarray  # case position of each pandapower bus (net.bus order)
    ls_inputs: tuple  # (Ybus csc, Sbus, V0, ref, slack_weights, pv, pq) for NRSing_KLU
    ls_grid_factory: object  # () -> LSGrid
    ls_pos: np.ndarray  # case position of each LSGrid bus
    timings: dict = field(default_factory=dict)  # set-up times, s

    @property
    def pp_init(self) -> dict:
        """runpp keywords for gridflow's start (|V| and angle at every pandapower bus)."""
        V = self.V0[self.net_pos]
        return {"init_vm_pu": np.abs(V), "init_va_degree": np.rad2deg(np.angle(V))}

    def dvm_net(self, vm_net) -> float:
        """max |dVm| between pandapower bus voltages (net.bus order) and gridflow's reference."""
        return float(np.nanmax(np.abs(np.asarray(vm_net) - np.abs(self.ref_V[self.net_pos]))))

    def dvm_ls(self, V_ls) -> float:
        return float(np.max(np.abs(np.abs(np.asarray(V_ls)) - np.abs(self.ref_V[self.ls_pos]))))


def _quiet():
    warnings.simplefilter("ignore")


def build_bundle(name: str) -> Bundle:
    logging.getLogger("pandapower").setLevel(logging.ERROR)  # from_ppc's notes on same-voltage transformers
    import pandapower.networks as pn
    from lightsim2grid.network import init_from_matpower, init_from_pandapower
    from pandapower.converter.pypower import from_ppc

    timings = {}
    with warnings.catch_warnings():
        _quiet()
        if name in gridflow.case_names()["pandapower"]:
            t = time.perf_counter()
            net = getattr(pn, name)()
            timings["pandapower_net_s"] = time.perf_counter() - t
            t = time.perf_counter()
            case = gridflow.from_pandapower(net, name=name)
            timings["gridflow_from_pandapower_s"] = time.perf_counter() - t
            lookup = case.meta["pp_bus_lookup"]
            net_pos = lookup[net.bus.index.values]
            ls_pos = net_pos  # LSGrid buses are pandapower's (contiguous index 0..n-1)
            if not (net.bus.index.values == np.arange(len(net.bus))).all():
                raise RuntimeError(f"{name}: pandapower bus index is not 0..n-1")

            def factory(net=net):
                return init_from_pandapower(net)
        else:
            t = time.perf_counter()
            case = gridflow.load_case(name)
            timings["gridflow_load_case_s"] = time.perf_counter() - t
            t = time.perf_counter()
            net = from_ppc(matched_ppc(case), f_hz=60, validate_conversion=False)
            timings["pandapower_from_ppc_s"] = time.perf_counter() - t
            net_pos = np.arange(case.nb)  # from_ppc keeps the ppc's bus order
            ls_pos = np.arange(case.nb)
            ppc = to_ppc(case)

            def factory(ppc=ppc):
                return init_from_matpower(ppc)
    n = gsolve.model_for(case).net
    Sbus = make_sbus(case, n)
    V0 = initial_voltage(case, n, "case", Sbus)
    res = gridflow.solve(case, tol_mva=gf_tol_mva(case, "peer"))
    if not res.converged:
        raise RuntimeError(f"{name}: gridflow's reference solve did not converge: {res.message}")
    weights = np.zeros(case.nb)
    weights[n.ref] = 1.0 / len(n.ref)
    i32 = np.int32
    ls_inputs = (sp.csc_matrix(n.Ybus), Sbus, V0.astype(complex), n.ref.astype(i32), weights, n.pv.astype(i32),
                 n.pq.astype(i32))
    return Bundle(name=name, case=case, net=net, V0=V0, ref_V=res.V.copy(), net_pos=net_pos, ls_inputs=ls_inputs,
                  ls_grid_factory=factory, ls_pos=ls_pos, timings=timings)


_bundles: dict[str, Bundle] = {}


def get_bundle(name: str) -> Bundle:
    if name not in _bundles:
        _bundles[name] = build_bundle(name)
    return _bundles[name]


@pytest.fixture(scope="session", autouse=True)
def _numba_warm():
    """Compile pandapower's numba kernels once, on a small net, before anything is timed."""
    try:
        import numba  # noqa: F401
    except ImportError:
        pytest.exit("numba is not installed: pandapower would run its slow pure-Python Jacobian "
                    "(pip install numba, or the 'bench' extra)", returncode=2)
    import pandapower as pp
    import pandapower.networks as pn

    with warnings.catch_warnings():
        _quiet()
        net = pn.case118()
        for ls in (False, "auto"):
            pp.runpp(net, numba=True, lightsim2grid=ls)
            pp.runpp(net, numba=True, lightsim2grid=ls, init="results")


# ---------------------------------------------------------------- helpers for the tests

def median_ms(fn, n: int) -> float:
    """Median wall time of ``n`` calls of fn(), ms."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return 1e3 * statistics.median(out)


def _cpu_ticks() -> tuple[int, int]:
    """(busy clock ticks of the whole machine, clock ticks of this process and its threads) so far."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    busy = sum(v) - v[3] - v[4]  # all but idle and iowait
    with open("/proc/self/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return busy, int(f[11]) + int(f[12])  # utime + stime


@pytest.fixture(autouse=True)
def _others_cpu(request):
    """Record, per benchmark, how much CPU other processes used while it ran (cores busy, of nproc).

    Other jobs share this machine; a benchmark that ran beside them is slower than on a quiet machine,
    and this says by how much the machine was shared (0 = quiet; 1 = one core busy elsewhere).
    """
    if "benchmark" not in request.fixturenames:
        yield
        return
    bench = request.getfixturevalue("benchmark")
    try:
        busy0, own0 = _cpu_ticks()
    except OSError:
        yield
        return
    t0 = time.perf_counter()
    yield
    busy1, own1 = _cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    wall = time.perf_counter() - t0
    bench.extra_info["others_cores_busy"] = round(max(0.0, (busy1 - busy0) - (own1 - own0)) / hz / wall, 2)
    bench.extra_info["loadavg_1min_after"] = round(os.getloadavg()[0], 2)


def machine_info() -> dict:
    info = {"nproc": os.cpu_count(), "loadavg": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def pytest_benchmark_update_json(config, benchmarks, output_json):
    import importlib.metadata as md

    versions = {}
    for pkg in ("gridflow", "numpy", "scipy", "pandapower", "lightsim2grid", "numba", "kvxopt", "pytest-benchmark"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    output_json["gridflow_bench"] = {"machine": machine_info(), "versions": versions,
                                     "blas_threads_env": {k: os.environ.get(k) for k in
                                                          ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
                                     "setup": {k: b.timings for k, b in _bundles.items()}}
