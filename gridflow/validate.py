"""Compare gridflow with the peer that defines a case's semantics.

* pandapower nets (``pandapower.networks`` names, JSON files, net objects):
  ``pandapower.runpp`` on the same net; bus voltages through pandapower's bus
  lookup, line and two-winding transformer flows from ``res_line`` /
  ``res_trafo``.
* files read through pypowsybl (PSS/E ``.raw``/``.rawx``, CGMES, UCTE, IIDM...):
  PowSyBl OpenLoadFlow on the library's own network, with the settings of
  gridflow's model (no transformer, shunt or phase-shifter control, no
  distributed slack, reactive limits off, the slack bus gridflow took, every
  in-service generator with a target regulating, plausibility checks off);
  bus voltages by IIDM bus id, line and transformer flows by element id.
* MATPOWER ``.m`` files: PYPOWER's ``runpf`` (MATPOWER's Python port) on the
  same arrays (PYPOWER cannot read ``.m`` text, so our parser feeds both; the
  parser is checked on its own against an independent one in the tests).

Never compare a ``.m`` solve with pandapower's import of that file:
pandapower's ``from_mpc`` changes the model of several cases (see README).

Tolerances (defaults): |dVm| <= 1e-6 pu, |dVa| <= 1e-4 degree, branch flows
<= 1e-3 MW / MVAr.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from gridflow.case import Case
from gridflow.errors import CaseError, GridflowError
from gridflow.io import load_case
from gridflow.io.pandapower import from_pandapower, load_pandapower_case
from gridflow.solve import solve

TOL_VM_PU = 1e-6
TOL_VA_DEG = 1e-4
TOL_FLOW_MVA = 1e-3


@dataclass
class Validation:
    """Worst differences between gridflow and the peer (absolute)."""

    case: str
    peer: str
    peer_converged: bool
    gridflow_converged: bool
    max_dvm_pu: float = np.nan
    max_dva_deg: float = np.nan
    max_dflow_mva: float = np.nan
    worst: dict = field(default_factory=dict)
    compared: dict = field(default_factory=dict)
    tol_vm_pu: float = TOL_VM_PU
    tol_va_deg: float = TOL_VA_DEG
    tol_flow_mva: float = TOL_FLOW_MVA

    @property
    def ok(self) -> bool:
        return bool(self.peer_converged and self.gridflow_converged and self.max_dvm_pu <= self.tol_vm_pu
                    and self.max_dva_deg <= self.tol_va_deg and self.max_dflow_mva <= self.tol_flow_mva)


def validate(source, *, init: str = "auto", tol_vm_pu: float = TOL_VM_PU, tol_va_deg: float = TOL_VA_DEG,
             tol_flow_mva: float = TOL_FLOW_MVA, peer_init: str | None = None) -> Validation:
    """Solve ``source`` with gridflow and its peer; return the worst differences.

    ``peer_init``: start for the peer ("auto", "dc", "flat" for pandapower;
    "case" or "flat" for PYPOWER). Default: pandapower "auto", PYPOWER the
    case's stored voltages (MATPOWER's default).
    """
    tols = dict(tol_vm_pu=tol_vm_pu, tol_va_deg=tol_va_deg, tol_flow_mva=tol_flow_mva)
    net = _pandapower_net(source)
    if net is not None:
        return _vs_pandapower(net, _name(source), init, peer_init or "auto", tols)
    case = load_case(source)
    if case.meta.get("format") == "powsybl":
        return _vs_openloadflow(source, case, init, peer_init or "dc", tols)
    if case.meta.get("format") != "matpower":
        raise GridflowError("validate needs a MATPOWER .m file, a pandapower net, JSON file or case name, or a "
                            "file pypowsybl reads (.raw, .rawx, .uct, .xiidm, CGMES .zip)")
    return _vs_pypower(case, init, peer_init or "case", tols)


def _name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", None) or "pandapower net"


def _pandapower_net(source):
    if hasattr(source, "bus") and hasattr(source, "line") and not isinstance(source, (str, os.PathLike, Case)):
        return source
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.lower().endswith(".json") and os.path.isfile(text):
            import pandapower as pp

            try:
                return pp.from_json(text)
            except Exception as e:
                raise CaseError(f"not a readable pandapower JSON file ({type(e).__name__}: {e})",
                                source=text) from None
        if not os.path.exists(text) and not text.endswith(".m"):
            return load_pandapower_case(text)
    return None


def _vs_pandapower(net, name, init, peer_init, tols) -> Validation:
    import pandapower as pp

    case = from_pandapower(net, name=name)
    res = solve(case, init=init)
    v = Validation(case=name, peer="pandapower", peer_converged=False, gridflow_converged=res.converged, **tols)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, init=peer_init, tolerance_mva=1e-10, max_iteration=50, calculate_voltage_angles=True,
                     numba=_has_numba())
        v.peer_converged = bool(net.converged)
    except Exception:  # pandapower raises LoadflowNotConverged and others
        v.peer_converged = False
    if not (v.peer_converged and res.converged):
        return v
    lookup = case.meta["pp_bus_lookup"]
    idx = net.bus.index.values
    live = net.bus.in_service.values & np.isfinite(net.res_bus.vm_pu.values)
    pos = lookup[idx[live]]
    ours_vm = res.bus["vm_pu"].to_numpy()[pos]
    ours_va = res.bus["va_degree"].to_numpy()[pos]
    dvm = np.abs(ours_vm - net.res_bus.vm_pu.values[live])
    dva = np.abs(ours_va - net.res_bus.va_degree.values[live])
    v.max_dvm_pu, v.max_dva_deg = float(np.max(dvm, initial=0)), float(np.max(dva, initial=0))
    v.worst["vm_bus"] = int(idx[live][np.argmax(dvm)]) if len(dvm) else None
    v.worst["va_bus"] = int(idx[live][np.argmax(dva)]) if len(dva) else None
    dflow = []
    ranges = case.meta["pp_branch_ranges"]
    br = res.branch
    for element, cols in (("line", ("p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar")),
                          ("trafo", ("p_hv_mw", "q_hv_mvar", "p_lv_mw", "q_lv_mvar"))):
        if element not in ranges or len(getattr(net, element)) == 0:
            continue
        a, b = ranges[element]
        table = getattr(net, f"res_{element}")
        peer = table[list(cols)].to_numpy()
        ours = br[["p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar"]].to_numpy()[a:b]
        ok = np.isfinite(peer).all(axis=1) & getattr(net, element).in_service.values
        d = np.abs(ours[ok] - peer[ok])
        dflow.append(d.max(initial=0))
        v.compared[element] = int(ok.sum())
    v.compared["bus"] = int(live.sum())
    v.max_dflow_mva = float(max(dflow, default=0.0))
    return v


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def to_ppc(case: Case) -> dict:
    """The case as a MATPOWER/PYPOWER dict (MW, degrees, 1-based bus numbers as in the case)."""
    base = case.base_mva
    b, g, br = case.bus, case.gen, case.branch
    bus = np.column_stack([b.number, b.type, b.pd * base, b.qd * base, b.gs * base, b.bs * base, b.area,
                           b.vm, np.rad2deg(b.va), b.base_kv, b.zone, b.vmax, b.vmin]).astype(float)
    gen = np.zeros((case.ng, 21))
    gen[:, :10] = np.column_stack([b.number[g.bus], g.pg * base, g.qg * base, g.qmax * base, g.qmin * base, g.vg,
                                   np.full(case.ng, base), g.status, g.pmax * base, g.pmin * base])
    branch = np.zeros((case.nl, 13))
    branch[:, :11] = np.column_stack([b.number[br.f], b.number[br.t], br.r, br.x, br.b, br.rate_a * base,
                                      br.rate_b * base, br.rate_c * base, np.where(br.tap == 1, 0, br.tap),
                                      np.rad2deg(br.shift), br.status])
    branch[:, 11], branch[:, 12] = -360, 360
    return {"version": "2", "baseMVA": base, "bus": bus, "gen": gen, "branch": branch}


def _vs_pypower(case: Case, init, peer_init, tols) -> Validation:
    from pypower.ppoption import ppoption
    from pypower.runpf import runpf

    res = solve(case, init=init)
    v = Validation(case=case.name, peer="pypower", peer_converged=False, gridflow_converged=res.converged, **tols)
    ppc = to_ppc(case)
    if peer_init == "flat":  # |V| = 1 and angle 0 except at slack buses, which keep the reference angle
        ppc["bus"][:, 7] = 1.0
        ppc["bus"][ppc["bus"][:, 1] != 3, 8] = 0.0
    opt = ppoption(VERBOSE=0, OUT_ALL=0, PF_TOL=1e-10, PF_MAX_IT=50)
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        import contextlib

        with contextlib.redirect_stdout(devnull):
            r, ok = runpf(ppc, opt)
    v.peer_converged = bool(ok)
    if not (ok and res.converged):
        return v
    order = np.argsort(r["bus"][:, 0])
    pos = order[np.searchsorted(r["bus"][:, 0], case.bus.number, sorter=order)]
    live = res.case.bus.type != 4
    live &= np.isfinite(res.bus["vm_pu"].to_numpy())
    dvm = np.abs(res.bus["vm_pu"].to_numpy() - r["bus"][pos, 7])[live]
    dva = np.abs(res.bus["va_degree"].to_numpy() - r["bus"][pos, 8])[live]
    v.max_dvm_pu, v.max_dva_deg = float(dvm.max(initial=0)), float(dva.max(initial=0))
    v.worst["vm_bus"] = int(case.bus.number[live][np.argmax(dvm)]) if len(dvm) else None
    v.worst["va_bus"] = int(case.bus.number[live][np.argmax(dva)]) if len(dva) else None
    peer = r["branch"][:, 13:17]
    ours = res.branch[["p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar"]].to_numpy()
    on = res.branch["in_service"].to_numpy()
    d = np.abs(ours[on] - peer[on])
    v.max_dflow_mva = float(d.max(initial=0))
    k = int(np.argmax(d.max(axis=1))) if len(d) else None
    v.worst["flow_branch"] = int(np.flatnonzero(on)[k]) if k is not None else None
    v.compared = {"bus": int(live.sum()), "branch": int(on.sum())}
    return v


def openloadflow_parameters(case: Case, peer_init: str = "dc", tol_pu: float = 1e-9):
    """pypowsybl ``loadflow.Parameters`` for OpenLoadFlow matching gridflow's model of ``case``.

    ``peer_init``: "flat" (uniform values), "dc" (DC angles) or "case" (the
    file's stored voltages).
    """
    import pypowsybl.loadflow as lf

    init = {"flat": lf.VoltageInitMode.UNIFORM_VALUES, "dc": lf.VoltageInitMode.DC_VALUES,
            "case": lf.VoltageInitMode.PREVIOUS_VALUES}
    if peer_init not in init:
        raise GridflowError(f"peer init for OpenLoadFlow must be one of {', '.join(init)}, got {peer_init!r}")
    slack = case.meta.get("slack_bus_ids") or []
    return lf.Parameters(
        voltage_init_mode=init[peer_init], transformer_voltage_control_on=False, use_reactive_limits=False,
        phase_shifter_regulation_on=False, twt_split_shunt_admittance=False, shunt_compensator_voltage_control_on=False,
        read_slack_bus=False, write_slack_bus=False, distributed_slack=False,
        provider_parameters={
            "slackBusSelectionMode": "NAME", "slackBusesIds": ",".join(slack[:1]), "maxSlackBusCount": "1",
            "newtonRaphsonConvEpsPerEq": repr(tol_pu), "maxNewtonRaphsonIterations": "50",
            "generatorsWithZeroMwTargetAreNotStarted": "false", "minPlausibleTargetVoltage": "0.0",
            "maxPlausibleTargetVoltage": "100.0", "minRealisticVoltage": "0.0", "maxRealisticVoltage": "100.0",
            "voltageRemoteControl": "false", "useLoadModel": "false", "areaInterchangeControl": "false",
            "svcVoltageMonitoring": "false", "lowImpedanceThreshold": "1e-12",
        })


def _vs_openloadflow(source, case: Case, init, peer_init, tols) -> Validation:
    import pypowsybl.loadflow as lf

    from gridflow.io.powsybl import import_pypowsybl

    pn = import_pypowsybl()
    if isinstance(source, (str, os.PathLike)):
        network = pn.load(os.fspath(source))
    else:
        import copy

        network = copy.deepcopy(source)
    res = solve(case, init=init)
    v = Validation(case=case.name, peer="openloadflow", peer_converged=False, gridflow_converged=res.converged,
                   **tols)
    try:
        out = lf.run_ac(network, openloadflow_parameters(case, peer_init))
        v.peer_converged = bool(out and out[0].status == lf.ComponentStatus.CONVERGED)
    except Exception:  # pypowsybl raises PyPowsyblError for a failed run
        v.peer_converged = False
    if not (v.peer_converged and res.converged):
        return v
    buses = network.get_buses()
    ids = case.meta["bus_ids"]
    nb = len(ids)
    pos = np.array([i for i, b in enumerate(ids) if b in buses.index and np.isfinite(buses.at[b, "v_mag"])])
    peer_vm = np.array([buses.at[ids[i], "v_mag"] for i in pos]) / case.bus.base_kv[pos]
    peer_va = np.array([buses.at[ids[i], "v_angle"] for i in pos])
    ours_vm = res.bus["vm_pu"].to_numpy()[:nb][pos]
    ours_va = res.bus["va_degree"].to_numpy()[:nb][pos]
    slack = [i for i, p in enumerate(pos) if ids[p] in case.meta["slack_bus_ids"][:1]]
    k = slack[0] if slack else 0
    ours_va, peer_va = ours_va - ours_va[k], peer_va - peer_va[k]  # OpenLoadFlow's reference angle is 0
    dvm, dva = np.abs(ours_vm - peer_vm), np.abs(ours_va - peer_va)
    v.max_dvm_pu, v.max_dva_deg = float(dvm.max(initial=0)), float(dva.max(initial=0))
    v.worst["vm_bus"] = int(case.bus.number[pos[np.argmax(dvm)]]) if len(dvm) else None
    v.worst["va_bus"] = int(case.bus.number[pos[np.argmax(dva)]]) if len(dva) else None
    flows = {}
    for df in (network.get_lines(), network.get_2_windings_transformers()):
        for eid, p1, q1, p2, q2 in zip(df.index, df["p1"], df["q1"], df["p2"], df["q2"], strict=True):
            flows[eid] = (p1, q1, p2, q2)
    t3 = network.get_3_windings_transformers()
    for eid in t3.index:
        for leg in "123":
            flows[f"{eid}/leg{leg}"] = (t3.at[eid, f"p{leg}"], t3.at[eid, f"q{leg}"], np.nan, np.nan)
    ours = res.branch[["p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar"]].to_numpy()
    on = res.branch["in_service"].to_numpy()
    peer = np.array([flows.get(e, (np.nan,) * 4) for e in case.meta["branch_ids"]], dtype=float)
    d = np.abs(ours - peer)
    d = np.where(np.isfinite(d), d, 0.0)[on]
    v.max_dflow_mva = float(d.max(initial=0))
    if len(d):
        v.worst["flow_branch"] = case.meta["branch_ids"][int(np.flatnonzero(on)[np.argmax(d.max(axis=1))])]
    v.compared = {"bus": int(len(pos)), "branch": int(on.sum())}
    return v
