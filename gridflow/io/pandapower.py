"""Read pandapower nets through pandapower's own conversion, so element semantics match.

pandapower turns its tables (lines, transformers, ext_grids, sgens, wards,
switches...) into a MATPOWER-like internal case (``ppc``) before every power
flow. We call that same conversion (``pandapower.converter.to_ppc`` with the
options ``runpp`` uses by default) and read the ppc, so a net means exactly
what it means to pandapower. The pandapower bus and branch lookups are kept
in ``case.meta`` to map results back to pandapower's tables.

pandapower is imported only here (the referee seam).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gridflow.case import Case, check_case, make_branches, make_buses, make_gens, warn_setpoint_conflicts
from gridflow.errors import CaseError
from gridflow.io.matpower import (
    BASE_KV,
    BR_B,
    BR_R,
    BR_STATUS,
    BR_X,
    BS,
    BUS_AREA,
    BUS_TYPE,
    F_BUS,
    GEN_BUS,
    GEN_STATUS,
    GS,
    PD,
    PG,
    PMAX,
    PMIN,
    QD,
    QG,
    QMAX,
    QMIN,
    SHIFT,
    T_BUS,
    TAP,
    VA,
    VG,
    VM,
    VMAX,
    VMIN,
    ZONE,
)

# pandapower's extra ppc columns
_CID_P, _CZD_P, _CID_Q, _CZD_Q = 13, 14, 16, 17
_SL_FAC = 25  # gen: distributed-slack weight (from gen/ext_grid slack_weight)
_BR_R_ASYM, _BR_X_ASYM, _BR_G, _BR_G_ASYM, _BR_B_ASYM = 21, 22, 23, 24, 25


# element tables with in-service rows gridflow does not model: pandapower's Newton solves them with its FACTS and
# DC-grid extensions (refused in one line naming the table and row)
_REFUSED_TABLES = {
    "svc": "static var compensator", "tcsc": "thyristor-controlled series capacitor",
    "ssc": "static synchronous compensator (STATCOM)", "vsc": "voltage source converter",
    "vsc_stacked": "stacked voltage source converter", "vsc_bipolar": "bipolar voltage source converter",
    "line_dc": "DC line of a DC grid", "load_dc": "DC load", "source_dc": "DC source",
}
_VOLTAGE_DEPENDENT = ("const_z_percent", "const_i_percent", "const_z_p_percent", "const_i_p_percent",
                      "const_z_q_percent", "const_i_q_percent")


def check_pandapower_elements(net, name: str = "net") -> None:
    """Refuse (:class:`CaseError`, one line) a net with an in-service element gridflow does not model.

    Audit of what pandapower's ``runpp`` reads (pandapower 3.5), and what gridflow does:

    * modelled through pandapower's own conversion (``_pd2ppc``), so exactly as
      ``runpp``: bus, load, sgen, motor, storage, asymmetric_load and
      asymmetric_sgen (their symmetric equivalent, as runpp), shunt (steps and
      step tables), ward, xward, ext_grid, gen, line, trafo (tap changers and
      tap-dependent impedance tables), trafo3w, impedance, switch;
    * dcline: turned into two generators by pandapower's own
      ``_add_auxiliary_elements`` before the conversion, as ``runpp`` does;
    * refused when a row is in service: svc, tcsc, ssc, vsc, vsc_stacked,
      vsc_bipolar, line_dc, load_dc, source_dc; loads with voltage-dependent
      parts (const_z/const_i percent); generators with a reactive capability
      curve (q_capability_characteristic, used by runpp with enforce_q_lims);
    * not read by ``runpp``'s power flow, so not by gridflow either:
      controller (runpp's default run_control=False; gridflow warns),
      measurement (state estimation), poly_cost / pwl_cost (OPF), group,
      characteristic tables not referenced by an element, bus_dc alone.
    """
    for table, what in _REFUSED_TABLES.items():
        df = net[table] if table in net else None
        if df is None or not len(df):
            continue
        on = df["in_service"].fillna(False).astype(bool) if "in_service" in df else np.ones(len(df), bool)
        if np.any(on):
            row = df.index[np.asarray(on)][0]
            raise CaseError(f"net.{table} row {row} is in service: a {what} is not modelled by gridflow (pandapower "
                            "solves it with its FACTS/DC extensions); set in_service=False to solve without it",
                            source=name)
    load = net.load
    if len(load):
        for c in _VOLTAGE_DEPENDENT:
            if c in load and (load[c].fillna(0) != 0).any():
                row = load.index[(load[c].fillna(0) != 0).to_numpy()][0]
                raise CaseError(f"net.load row {row}: voltage-dependent loads ({c}) are not supported", source=name)
    for table in ("gen", "sgen"):
        df = net[table]
        if len(df) and "reactive_capability_curve" in df:
            curve = df["reactive_capability_curve"].fillna(False).astype(bool) & df["in_service"].astype(bool)
            if curve.any():
                raise CaseError(f"net.{table} row {df.index[curve.to_numpy()][0]}: a reactive capability curve "
                                "(q_capability_characteristic) is not modelled", source=name)


def from_pandapower(net, name: str | None = None) -> Case:
    """A :class:`Case` from a pandapower net (not modified).

    Buses are pandapower's internal (fused) buses; ``case.bus.number`` is the
    pandapower index of the first net bus mapped to each; ``case.meta`` holds
    ``pp_bus_lookup`` (net bus index -> case bus position),
    ``pp_branch_ranges`` ({"line": (start, stop), "trafo": ...}) and
    ``aux_buses`` (positions of buses pandapower adds: 3-winding transformer
    star points, open-switch ends..., not counted as de-energized buses).

    Branch ratings are pandapower's: current ratings (see
    :func:`gridflow.results.loading_percent`), never the placeholder MVA rate of
    pandapower's internal tables. Elements gridflow does not model are refused
    (:func:`check_pandapower_elements`); in-service DC lines become two
    generators as in ``runpp``. Several generators with different voltage
    setpoints at one bus (pandapower refuses such a net): the last one in
    pandapower's internal order is used, with a warning, as for ``.m`` files.
    """
    import copy
    import warnings

    import pandapower as pp
    from pandapower.auxiliary import _add_auxiliary_elements, _add_ppc_options
    from pandapower.pd2ppc import _pd2ppc

    name = name or (net.name if isinstance(getattr(net, "name", None), str) and net.name else "pandapower net")
    net = copy.deepcopy(net)
    check_pandapower_elements(net, name)
    if "controller" in net and len(net.controller) and net.controller["in_service"].astype(bool).any():
        warnings.warn(f"{name}: net.controller has {int(net.controller['in_service'].astype(bool).sum())} "
                      "in-service controllers; like pandapower's runpp (run_control=False) gridflow does not run "
                      "them", stacklevel=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the options runpp uses by default (voltage-dependent loads are refused above, so
            # voltage_depend_loads=False builds the same bus table without pandapower's slow per-bus
            # loop); the full ppc (before out-of-service elements are dropped) keeps the bus lookup valid
            net["_options"] = {}
            _add_ppc_options(net, calculate_voltage_angles=True, trafo_model="t", check_connectivity=True,
                             mode="pf", switch_rx_ratio=2, init_vm_pu="flat", init_va_degree="flat",
                             enforce_q_lims=False, enforce_p_lims=False, recycle=None, voltage_depend_loads=False)
            _add_auxiliary_elements(net)  # DC lines -> a generator at each end, as runpp's _powerflow
            try:
                ppc, _ = _pd2ppc(net)
            except UserWarning as e:
                if "different setpoints" not in str(e):
                    raise
                ppc = net["_ppc"]  # complete: pandapower checks the setpoints after building it
    except CaseError:
        raise
    except Exception as e:  # pandapower raises many kinds; report one line
        raise CaseError(f"pandapower could not convert the net: {type(e).__name__}: {e}", source=name) from None
    bus, gen, branch = ppc["bus"], ppc["gen"], ppc["branch"]
    if bus.shape[1] > _CZD_Q and np.any(bus[:, [_CID_P, _CZD_P, _CID_Q, _CZD_Q]] != 0):
        raise CaseError("voltage-dependent loads (const_z/const_i percent) are not supported", source=name)
    lookups = net._pd2ppc_lookups
    nb = bus.shape[0]
    pp_lookup = np.asarray(lookups["bus"], dtype=np.int64)
    number = np.full(nb, -1, np.int64)
    valid = np.flatnonzero((pp_lookup >= 0) & (pp_lookup < nb))
    valid = valid[np.isin(valid, net.bus.index.values)]
    for b in valid[::-1]:  # first pandapower bus wins
        number[pp_lookup[b]] = b
    missing = number < 0  # auxiliary buses pandapower adds (3W-trafo star points, ...)
    number[missing] = np.max(np.r_[net.bus.index.values, -1]) + 1 + np.arange(int(missing.sum()))
    base = float(ppc["baseMVA"])
    s = 1.0 / base
    ncol = branch.shape[1]

    def col(c):
        if c >= ncol:
            return np.zeros(branch.shape[0])
        return np.real(branch[:, c])

    # pandapower writes each regulated bus's setpoint into the bus VM column (the last generator's, in its
    # internal order) and starts from it; take it as the setpoint of every generator there
    gbus = gen[:, GEN_BUS].astype(np.int64)
    regulated = bus[gbus, BUS_TYPE] != 1
    vg = np.where(regulated, bus[gbus, VM], gen[:, VG])
    tap = np.real(branch[:, TAP]).copy()
    tap[tap == 0] = 1.0
    names = np.array([""] * nb, dtype=object)
    if "name" in net.bus:
        for b in valid:
            nm = net.bus.at[b, "name"]
            if isinstance(nm, str):
                names[pp_lookup[b]] = nm
    f_bus, t_bus = np.real(branch[:, F_BUS]).astype(np.int64), np.real(branch[:, T_BUS]).astype(np.int64)
    ranges = {k: tuple(int(x) for x in v) for k, v in lookups.get("branch", {}).items()}
    rate, scale_f, scale_t, current = _pandapower_ratings(net, ranges, bus[f_bus, BASE_KV], bus[t_bus, BASE_KV])
    case = Case(
        name=name,
        base_mva=base,
        bus=make_buses(
            number=number, type=bus[:, BUS_TYPE], pd=bus[:, PD] * s, qd=bus[:, QD] * s, gs=bus[:, GS] * s,
            bs=bus[:, BS] * s, area=np.nan_to_num(bus[:, BUS_AREA], nan=1), zone=np.nan_to_num(bus[:, ZONE], nan=1),
            vm=bus[:, VM], va=np.deg2rad(bus[:, VA]), base_kv=bus[:, BASE_KV],
            vmax=np.nan_to_num(bus[:, VMAX], nan=np.inf), vmin=np.nan_to_num(bus[:, VMIN], nan=0.0), name=names,
        ),
        gen=make_gens(
            bus=gbus, pg=gen[:, PG] * s, qg=gen[:, QG] * s,
            qmax=np.nan_to_num(gen[:, QMAX], nan=np.inf) * s, qmin=np.nan_to_num(gen[:, QMIN], nan=-np.inf) * s,
            vg=vg, status=gen[:, GEN_STATUS] > 0,
            pmax=np.nan_to_num(gen[:, PMAX], nan=np.inf) * s, pmin=np.nan_to_num(gen[:, PMIN], nan=-np.inf) * s,
            slack_weight=np.nan_to_num(np.real(gen[:, _SL_FAC])) if gen.shape[1] > _SL_FAC else None,
        ),
        branch=make_branches(
            f=f_bus, t=t_bus,
            r=col(BR_R), x=col(BR_X), b=col(BR_B),  # charging y = g + jb; a complex BR_B is pandapower's
            # transformer magnetizing admittance, entering as 1j * BR_B: its imaginary part is -g
            rate_a=rate * s, rate_b=np.zeros(len(rate)), rate_c=np.zeros(len(rate)),
            tap=tap, shift=np.deg2rad(col(SHIFT)), status=col(BR_STATUS) > 0,
            g=col(_BR_G) - np.imag(branch[:, BR_B]), r_asym=col(_BR_R_ASYM), x_asym=col(_BR_X_ASYM),
            g_asym=col(_BR_G_ASYM), b_asym=col(_BR_B_ASYM),
            rate_current=current, rate_scale_f=scale_f, rate_scale_t=scale_t,
        ),
        meta={"format": "pandapower", "pp_bus_lookup": pp_lookup, "pp_branch_ranges": ranges,
              "aux_buses": np.flatnonzero(missing), "pandapower_version": pp.__version__},
    )
    check_case(case, name)
    warn_setpoint_conflicts(case, name, vg=gen[:, VG])
    return case


def _pandapower_ratings(net, ranges, kv_f, kv_t):
    """Per ppc branch: rate (MVA at 1 pu at the monitored end), from/to end scales, current-rating flags.

    As pandapower's results (``results_branch``): a line's current over
    ``max_i_ka * df * parallel``; a transformer's current at each side over its
    rated current ``sn_mva * df * parallel / (sqrt(3) vn_kv)`` (trafo_loading
    "current"); a 3-winding transformer's current at its hv, mv and lv bus over
    ``sn_{hv,mv,lv}_mva / (sqrt(3) vn_kv)``. Other branches (impedances, switches,
    xward branches) have no rating in pandapower: 0 (unrated).
    """
    nl = len(kv_f)
    rate, scale_f, scale_t = np.zeros(nl), np.ones(nl), np.ones(nl)
    current = np.zeros(nl, bool)
    sqrt3 = np.sqrt(3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if "line" in ranges:
            a, b = ranges["line"]
            ln = net.line
            i_max = ln["max_i_ka"].to_numpy(float) * ln.get("df", 1.0) * ln.get("parallel", 1)
            rate[a:b] = sqrt3 * kv_f[a:b] * np.asarray(i_max, float)
            scale_t[a:b] = np.where(kv_f[a:b] > 0, kv_t[a:b] / kv_f[a:b], 1.0)
            current[a:b] = True
        if "trafo" in ranges:
            a, b = ranges["trafo"]
            tr = net.trafo
            sn = tr["sn_mva"].to_numpy(float) * np.asarray(tr.get("df", 1.0), float) * np.asarray(
                tr.get("parallel", 1), float)
            rate[a:b] = sn * kv_f[a:b] / tr["vn_hv_kv"].to_numpy(float)
            scale_t[a:b] = (kv_t[a:b] / tr["vn_lv_kv"].to_numpy(float)) / (kv_f[a:b] / tr["vn_hv_kv"].to_numpy(float))
            current[a:b] = True
        if "trafo3w" in ranges:
            a, b = ranges["trafo3w"]
            t3 = net.trafo3w
            n = (b - a) // 3
            hv, mv, lv = slice(a, a + n), slice(a + n, a + 2 * n), slice(a + 2 * n, b)
            rate[hv] = t3["sn_hv_mva"].to_numpy(float) * kv_f[hv] / t3["vn_hv_kv"].to_numpy(float)
            scale_t[hv] = 0.0  # the star point end is not a winding
            rate[mv] = t3["sn_mv_mva"].to_numpy(float) * kv_t[mv] / t3["vn_mv_kv"].to_numpy(float)
            rate[lv] = t3["sn_lv_mva"].to_numpy(float) * kv_t[lv] / t3["vn_lv_kv"].to_numpy(float)
            scale_f[a + n:b] = 0.0
            current[a:b] = True
    rate = np.where(np.isfinite(rate) & (rate > 0), rate, 0.0)
    scale_f = np.where(np.isfinite(scale_f), scale_f, 0.0)
    scale_t = np.where(np.isfinite(scale_t), scale_t, 0.0)
    return rate, scale_f, scale_t, current


def read_pandapower_json(path: str | Path) -> Case:
    """A :class:`Case` from a pandapower JSON file."""
    import pandapower as pp

    path = Path(path)
    try:
        net = pp.from_json(str(path))
    except Exception as e:
        raise CaseError(f"not a readable pandapower JSON file ({type(e).__name__}: {e})", source=str(path)) from None
    return from_pandapower(net, name=path.stem)


def pandapower_case_names() -> list[str]:
    """Names of the transmission cases in ``pandapower.networks`` (functions taking no arguments)."""
    return list(_PP_CASES)


# transmission test cases of pandapower.networks (callable with no argument)
_PP_CASES = (
    "case4gs", "case5", "case6ww", "case9", "case14", "case24_ieee_rts", "case30", "case_ieee30", "case33bw",
    "case39", "case57", "case89pegase", "case118", "case145", "case_illinois200", "case300", "case1354pegase",
    "case1888rte", "case2848rte", "case2869pegase", "case3120sp", "case6470rte", "case6495rte", "case6515rte",
    "case9241pegase", "GBnetwork", "GBreducednetwork", "iceland",
)


def load_pandapower_case(name: str):
    """The pandapower net of a ``pandapower.networks`` case name."""
    import warnings

    if name not in _PP_CASES:
        return None
    import pandapower.networks as pn

    fn = getattr(pn, name, None)
    if fn is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()
