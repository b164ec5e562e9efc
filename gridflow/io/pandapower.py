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

from gridflow.case import Case, check_case, make_branches, make_buses, make_gens
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
    RATE_A,
    RATE_B,
    RATE_C,
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


def from_pandapower(net, name: str | None = None) -> Case:
    """A :class:`Case` from a pandapower net (not modified).

    Buses are pandapower's internal (fused) buses; ``case.bus.number`` is the
    pandapower index of the first net bus mapped to each; ``case.meta`` holds
    ``pp_bus_lookup`` (net bus index -> case bus position) and
    ``pp_branch_ranges`` ({"line": (start, stop), "trafo": ...}).
    """
    import copy
    import warnings

    import pandapower as pp
    from pandapower.auxiliary import _add_ppc_options
    from pandapower.pd2ppc import _pd2ppc

    net = copy.deepcopy(net)
    if len(net.load) and any(c in net.load and (net.load[c].fillna(0) != 0).any()
                             for c in ("const_z_percent", "const_i_percent", "const_z_p_percent", "const_i_p_percent",
                                       "const_z_q_percent", "const_i_q_percent")):
        raise CaseError("voltage-dependent loads (const_z/const_i percent) are not supported", source=name or "net")
    name = name or (net.name if isinstance(getattr(net, "name", None), str) and net.name else "pandapower net")
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
            ppc, _ = _pd2ppc(net)
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

    # pandapower writes each regulated bus's setpoint into the bus VM column and starts from it;
    # take it as the setpoint of every generator there, so "last generator wins" cannot differ.
    gbus = gen[:, GEN_BUS].astype(np.int64)
    vg = np.where(bus[gbus, BUS_TYPE] != 1, bus[gbus, VM], gen[:, VG])
    tap = np.real(branch[:, TAP]).copy()
    tap[tap == 0] = 1.0
    names = np.array([""] * nb, dtype=object)
    if "name" in net.bus:
        for b in valid:
            nm = net.bus.at[b, "name"]
            if isinstance(nm, str):
                names[pp_lookup[b]] = nm
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
            f=np.real(branch[:, F_BUS]).astype(np.int64), t=np.real(branch[:, T_BUS]).astype(np.int64),
            r=col(BR_R), x=col(BR_X), b=col(BR_B),  # charging y = g + jb; a complex BR_B is pandapower's
            # transformer magnetizing admittance, entering as 1j * BR_B: its imaginary part is -g
            rate_a=np.nan_to_num(col(RATE_A)) * s, rate_b=np.nan_to_num(col(RATE_B)) * s,
            rate_c=np.nan_to_num(col(RATE_C)) * s, tap=tap, shift=np.deg2rad(col(SHIFT)), status=col(BR_STATUS) > 0,
            g=col(_BR_G) - np.imag(branch[:, BR_B]), r_asym=col(_BR_R_ASYM), x_asym=col(_BR_X_ASYM),
            g_asym=col(_BR_G_ASYM), b_asym=col(_BR_B_ASYM),
        ),
        meta={"format": "pandapower", "pp_bus_lookup": pp_lookup,
              "pp_branch_ranges": {k: tuple(v) for k, v in lookups.get("branch", {}).items()},
              "pandapower_version": pp.__version__},
    )
    check_case(case, name)
    return case


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
