"""Power-flow results in engineering units, with pandapower's names and signs.

Tables are pandas DataFrames in the case's own row order:

* ``bus``: index = the case's bus numbers; ``vm_pu``, ``va_degree``, ``p_mw``,
  ``q_mvar`` (net demand: load minus generation, as pandapower's ``res_bus``).
  De-energized buses have NaN.
* ``branch``: one row per branch; ``p_from_mw``, ``q_from_mvar``, ``p_to_mw``,
  ``q_to_mvar`` (power entering the branch at each end), ``pl_mw``,
  ``ql_mvar`` (losses), ``loading_percent`` (of rating A, see
  :func:`loading_percent`: MVA for MATPOWER cases, current for pandapower nets;
  NaN where the branch is unrated, i.e. rating A is 0: not monitored).
* ``gen``: one row per generator; ``p_mw``, ``q_mvar`` (0 when out of service).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gridflow.case import Case


@dataclass(frozen=True)
class PowerFlowResult:
    """A solved (or failed) AC power flow.

    Attributes
    ----------
    case : Case
    converged : bool
    iterations : int
        Newton iterations, summed over all starts and Q-limit rounds tried.
    max_mismatch_mva : float
        Largest |dP| or |dQ| at any bus, MW or MVAr.
    worst_bus : int
        Case bus number where that mismatch is.
    init : str
        The start that converged (or the last one tried).
    backend : str
        "cpu" or "gpu".
    V : complex128 (nb,)
        Bus voltages, pu (0 at de-energized buses).
    bus, branch, gen : pandas.DataFrame
    dead_buses : int
        Buses not energized (not served): out of service, isolated, or in an
        island without a slack bus (see :func:`dead_bus_count`).
    message : str
        Why it failed, when it did.
    """

    case: Case
    converged: bool
    iterations: int
    max_mismatch_mva: float
    worst_bus: int
    init: str
    backend: str
    V: np.ndarray
    bus: pd.DataFrame
    branch: pd.DataFrame
    gen: pd.DataFrame
    dead_buses: int = 0
    message: str = ""
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Headline numbers: losses, voltage extremes, overloads, violations."""
        return summarize(self)


@dataclass(frozen=True)
class BatchResult:
    """Results of a batch, one row per scenario (T scenarios, nb buses, nl branches, ng generators).

    Attributes
    ----------
    vm_pu, va_degree : float64 (T, nb)
        Bus voltage magnitude (pu) and angle (degrees); NaN at de-energized buses.
    converged : bool (T,)
    iterations : int (T,)
        Newton steps (each a Jacobian factorization) each scenario took.
    chord_steps : int (T,)
        Cheap steps with the shared start Jacobian taken before them.
    max_mismatch_mva : float64 (T,)
        Largest |dP| or |dQ| left, MW / MVAr.
    backend : str
    bus : int64 (nb,)
        The case's bus numbers (columns of the bus arrays).
    reason : object (T,)
        Why a scenario failed ("" where it converged).
    gen_p_mw, gen_q_mvar : float64 (T, ng)
        Generator outputs (0 when out of service in that scenario).
    slack_mw : float64 (T,)
        Distributed slack power (0 without a distributed slack).
    dead_buses : int (T,)
        Buses de-energized in each scenario: those of the base case (out of service, isolated; see
        :func:`dead_bus_count`) and those an outage cut off (islands without a slack or a
        voltage-controlling generator).
    loading_percent, p_from_mw, q_from_mvar, p_to_mw, q_to_mvar : float64 (T, nl) or None
        Branch results, when asked for (``branch_results=True``); 0 flow on branches out of service.
    q_limited : bool (T, ng) or None
        Generators held at a Q limit in each scenario (with ``enforce_q_lims``): with ``gen_q_mvar``, the
        ``q_held`` that warm-starts a later batch from these solutions.
    """

    vm_pu: np.ndarray
    va_degree: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    chord_steps: np.ndarray
    max_mismatch_mva: np.ndarray
    backend: str
    bus: np.ndarray = field(repr=False, default=None)
    reason: np.ndarray = field(repr=False, default=None)
    gen_p_mw: np.ndarray = field(repr=False, default=None)
    gen_q_mvar: np.ndarray = field(repr=False, default=None)
    slack_mw: np.ndarray = field(repr=False, default=None)
    dead_buses: np.ndarray = field(repr=False, default=None)
    loading_percent: np.ndarray | None = None
    p_from_mw: np.ndarray | None = None
    q_from_mvar: np.ndarray | None = None
    p_to_mw: np.ndarray | None = None
    q_to_mvar: np.ndarray | None = None
    q_limited: np.ndarray | None = field(repr=False, default=None)

    @property
    def n_failed(self) -> int:
        return int((~self.converged).sum())

    def failed(self) -> np.ndarray:
        """Indices of the scenarios that did not converge."""
        return np.flatnonzero(~self.converged)


def branch_flows(case: Case, Yf, Yt, V):
    """Complex power entering each branch at its from and to end, pu, (nl,) each for V (nb,), or
    (T, nl) each for V (T, nb)."""
    if V.ndim == 2:
        Sf = V[:, case.branch.f] * np.conj((Yf @ V.T).T)
        St = V[:, case.branch.t] * np.conj((Yt @ V.T).T)
        return Sf, St
    Sf = V[case.branch.f] * np.conj(Yf @ V)
    St = V[case.branch.t] * np.conj(Yt @ V)
    return Sf, St


def rating_mva(case: Case, rating: str = "A", *, fallback: bool = True) -> np.ndarray:
    """Branch rating A, B or C in MVA (nl,); 0 means no rating (MATPOWER: unrated, not monitored).

    With ``fallback``, an emergency rating B or C of 0 falls back to the branch's rate A (a case that
    gives no emergency ratings, like ACTIVSg25k, is judged on its normal ones, never reported clean
    on ratings that do not exist). For current ratings (pandapower nets, ``case.branch.rate_current``) this is
    the rated current at the monitored end's base kV as MVA at 1 pu voltage.
    """
    br = case.branch
    rate = {"A": br.rate_a, "B": br.rate_b, "C": br.rate_c}[rating]
    if fallback and rating != "A":
        rate = np.where(rate > 0, rate, br.rate_a)
    return rate * case.base_mva


def rating_counts(case: Case, rating: str = "A") -> dict:
    """How a rating applies to the in-service branches: ``{"fallback": branches whose rating B/C is 0 and
    take rate A, "unrated": branches with no rating at all (not monitored)}``."""
    br = case.branch
    own = {"A": br.rate_a, "B": br.rate_b, "C": br.rate_c}[rating]
    on = br.status
    fallback = int((on & (own <= 0) & (br.rate_a > 0)).sum()) if rating != "A" else 0
    unrated = int((on & (rating_mva(case, rating) <= 0)).sum())
    return {"fallback": fallback, "unrated": unrated}


def unrated(case: Case, rating: str = "A") -> np.ndarray:
    """Branches (nl,) bool with no rating ``rating`` (0 or NaN): they are not monitored."""
    rate = rating_mva(case, rating)
    return ~(rate > 0)


def loading_percent(case: Case, Sf_mva, St_mva, rating: str = "A", *, vm_from=None, vm_to=None) -> np.ndarray:
    """Branch loading, percent (..., nl): the most loaded monitored end over its rating; NaN where unrated.

    Parameters
    ----------
    case : Case
    Sf_mva, St_mva : array (..., nl)
        Complex (or apparent) power entering the branch at the from and to end, MVA.
    rating : "A", "B" or "C"
    vm_from, vm_to : array (..., nl), keyword-only
        |V| at the from and to end, pu; needed when the case has current ratings.

    Two meanings, per branch (``case.branch``):

    * MVA ratings (MATPOWER, the default): ``max(|Sf|, |St|) / rate * 100``.
    * current ratings (``rate_current``, pandapower nets): at each end the
      current as MVA at 1 pu, ``|S| / |V|``, over the rate times that end's
      ``rate_scale_f`` / ``rate_scale_t`` (an end with scale 0 is not
      monitored). This is pandapower's ``res_line`` (current over
      ``max_i_ka * df * parallel``), ``res_trafo`` (``trafo_loading="current"``:
      current over the rated current at each side, ``sn_mva * df * parallel``)
      and, taking the largest of its three branches, ``res_trafo3w``.

    A rate of 0 is "unrated": NaN, never 0 % (see :func:`unrated`).
    """
    from gridflow.errors import GridflowError

    br = case.branch
    rate = rating_mva(case, rating)
    Sf, St = np.abs(Sf_mva), np.abs(St_mva)
    if br.rate_current.any():
        if vm_from is None or vm_to is None:
            raise GridflowError(f"{case.name}: current ratings need the end voltages (vm_from, vm_to)")
        with np.errstate(divide="ignore", invalid="ignore"):
            Sf = np.where(br.rate_current, np.where(vm_from > 0, Sf / np.where(vm_from > 0, vm_from, 1), 0), Sf)
            St = np.where(br.rate_current, np.where(vm_to > 0, St / np.where(vm_to > 0, vm_to, 1), 0), St)
    with np.errstate(divide="ignore", invalid="ignore"):
        lf = np.where(br.rate_scale_f > 0, Sf / (rate * br.rate_scale_f), 0.0)
        lt = np.where(br.rate_scale_t > 0, St / (rate * br.rate_scale_t), 0.0)
        return np.where(rate > 0, np.maximum(lf, lt) * 100.0, np.nan)


def gen_dispatch(case: Case, Ybus, V, ref, gen_on):
    """Generator P and Q, pu (ng,), as MATPOWER's ``pfsoln`` assigns them.

    Q at a bus is shared among its generators in proportion to their Q ranges;
    the slack bus's first generator takes the slack P.
    """
    gen = case.gen
    ng = len(gen)
    on = np.flatnonzero(gen_on)
    gbus = gen.bus[on]
    Sinj = V * np.conj(Ybus @ V)
    Pg = np.where(gen_on, gen.pg, 0.0)
    Qg = np.zeros(ng)
    if len(on):
        Qtot_bus = Sinj.imag + case.bus.qd  # total Q of the generators at each bus
        count = np.bincount(gbus, minlength=case.nb)
        qmin = gen.qmin[on].copy()
        qmax = gen.qmax[on].copy()
        M = np.abs(Qtot_bus[gbus]).sum() + np.abs(np.r_[qmin[np.isfinite(qmin)], qmax[np.isfinite(qmax)]]).sum()
        M = max(M, 1.0)
        qmin = np.where(np.isfinite(qmin), qmin, -M)
        qmax = np.where(np.isfinite(qmax), qmax, M)
        bus_qmin = np.bincount(gbus, qmin, minlength=case.nb)
        bus_qmax = np.bincount(gbus, qmax, minlength=case.nb)
        rng = bus_qmax[gbus] - bus_qmin[gbus]
        share = np.where(rng > 0, (Qtot_bus[gbus] - bus_qmin[gbus]) / np.where(rng > 0, rng, 1.0), 0.0)
        q = np.where(rng > 0, qmin + share * (qmax - qmin), Qtot_bus[gbus] / count[gbus])
        Qg[on] = q
        for r in ref:
            at = on[gbus == r]
            if len(at):
                Pg[at[0]] = Sinj[r].real + case.bus.pd[r] - Pg[at[1:]].sum()
    return Pg, Qg


def make_result(case: Case, net, V, *, converged, iterations, max_mismatch_pu, worst_bus, init, backend,
                message="", ref=None, extra=None, gen_p=None, gen_q=None) -> PowerFlowResult:
    """Turn a solver's V into tables in engineering units.

    ``gen_p``, ``gen_q`` (ng,), pu: the generators' outputs as the engine found them (distributed
    slack, Q limits); by default MATPOWER's ``pfsoln`` assignment (:func:`gen_dispatch`).
    """
    base = case.base_mva
    ref = net.ref if ref is None else ref
    on = net.energized
    Sinj = V * np.conj(net.Ybus @ V)
    vm = np.where(on, np.abs(V), np.nan)
    va = np.where(on, np.rad2deg(np.angle(V)), np.nan)
    bus = pd.DataFrame({
        "vm_pu": vm, "va_degree": va,
        "p_mw": np.where(on, -Sinj.real * base, np.nan), "q_mvar": np.where(on, -Sinj.imag * base, np.nan),
    }, index=pd.Index(case.bus.number, name="bus"))
    Sf, St = branch_flows(case, net.Yf, net.Yt, V)
    Sf = np.where(net.branch_on, Sf, 0) * base
    St = np.where(net.branch_on, St, 0) * base
    vm = np.abs(V)
    loading = loading_percent(case, Sf, St, vm_from=vm[case.branch.f], vm_to=vm[case.branch.t])
    branch = pd.DataFrame({
        "from_bus": case.bus.number[case.branch.f], "to_bus": case.bus.number[case.branch.t],
        "p_from_mw": Sf.real, "q_from_mvar": Sf.imag, "p_to_mw": St.real, "q_to_mvar": St.imag,
        "pl_mw": (Sf + St).real, "ql_mvar": (Sf + St).imag, "loading_percent": loading,
        "in_service": net.branch_on,
    })
    branch.index.name = "branch"
    Pg, Qg = gen_dispatch(case, net.Ybus, V, ref, net.gen_on) if gen_p is None else (gen_p, gen_q)
    gen = pd.DataFrame({"bus": case.bus.number[case.gen.bus], "p_mw": Pg * base, "q_mvar": Qg * base,
                        "in_service": net.gen_on})
    gen.index.name = "gen"
    return PowerFlowResult(
        case=case, converged=converged, iterations=iterations, max_mismatch_mva=max_mismatch_pu * base,
        worst_bus=int(case.bus.number[worst_bus]), init=init, backend=backend, V=V, bus=bus, branch=branch,
        gen=gen, dead_buses=dead_bus_count(case, net), message=message, extra=extra or {},
    )


def dead_bus_count(case: Case, net) -> int:
    """Buses not energized: out of service or isolated (type 4, as pandapower's own conversion marks them too)
    or in an island without a slack bus. Auxiliary buses a reader adds (``case.meta["aux_buses"]``:
    pandapower's 3-winding star points, open-switch ends) are not counted."""
    dead = ~np.asarray(net.energized, bool)
    aux = case.meta.get("aux_buses")
    if aux is not None and len(aux):
        dead = dead.copy()
        dead[np.asarray(aux, np.int64)] = False
    return int(dead.sum())


def summarize(res: PowerFlowResult) -> dict:
    """Losses, voltage extremes, overloads and voltage violations of a result."""
    case, bus, br = res.case, res.bus, res.branch
    vm = bus["vm_pu"].to_numpy()
    live = np.isfinite(vm)
    out = {
        "case": case.name, "origin": case.meta.get("origin", ""), "buses": case.nb, "branches": case.nl,
        "generators": case.ng,
        "converged": res.converged, "iterations": res.iterations, "init": res.init, "backend": res.backend,
        "max_mismatch_mva": res.max_mismatch_mva, "worst_mismatch_bus": res.worst_bus,
        "load_mw": float(np.where(live, case.bus.pd, 0).sum() * case.base_mva),
        "generation_mw": float(res.gen["p_mw"].sum()),
        "losses_mw": float(br["pl_mw"].sum()), "losses_mvar": float(br["ql_mvar"].sum()),
        "dead_buses": res.dead_buses,
    }
    if live.any():
        imin, imax = np.nanargmin(vm), np.nanargmax(vm)
        out.update(vm_min_pu=float(vm[imin]), vm_min_bus=int(bus.index[imin]),
                   vm_max_pu=float(vm[imax]), vm_max_bus=int(bus.index[imax]))
    over = br["loading_percent"].to_numpy() > 100.0
    out["overloaded_branches"] = int(np.sum(over))
    out["unrated_branches"] = int(np.sum(unrated(case, "A") & br["in_service"].to_numpy()))
    if over.any():
        k = int(np.nanargmax(br["loading_percent"].to_numpy()))
        out["max_loading_percent"] = float(br["loading_percent"].iloc[k])
        out["max_loading_branch"] = f"{int(br['from_bus'].iloc[k])}-{int(br['to_bus'].iloc[k])}"
    low = live & (vm < case.bus.vmin - 1e-9)
    high = live & (vm > case.bus.vmax + 1e-9)
    out["undervoltage_buses"] = int(low.sum())
    out["overvoltage_buses"] = int(high.sum())
    return out
