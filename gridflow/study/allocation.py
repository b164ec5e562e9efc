"""Load-shed allocation policies of the rolling-blackout study: who sheds how many MW.

Pure functions of a :class:`ShedProblem` (loads per bus, zones, critical buses and
the MW that must go) returning an :class:`Allocation` (MW and MVAr shed per bus, by
kind). No power flow here: the study runner (:mod:`gridflow.study.run`) solves the
AC cases and rotates the firm shed; :func:`allocate_network` takes its network
limits as linear sensitivities (:mod:`gridflow.study.sensitivity`).

Units: MW and MVAr throughout; arrays are over the case's buses (nb,).

Kinds of shed at a bus (its three loads):

* **flexible**: a datacenter's flexible share, curtailed;
* **backup**: a datacenter's remaining load moved onto its own backup generation
  (it leaves the grid, it is not dark);
* **firm**: ordinary (non-datacenter) load shed, the load that rotates as
  rolling blackouts.

Every shed keeps its load's power factor: Q shed = P shed x Q/P of the load it
comes from (the firm load's ``firm_q/firm_p``; the datacenter's
``dc_q/(flex_p + dc_p)`` for both flexible and backup). Critical buses never shed
anything, and no bus ever sheds more than its load of a kind.

Policies:

* :func:`allocate_pro_rata`: a zone table (ERCOT load-shed table, PJM manual
  load dump by zone): zone z takes ``S * r_z / sum(r)``, every load of the zone
  sheds the same fraction; a zone that cannot cover its share passes the rest to
  the others (water-filling).
* :func:`allocate_large_load_first`: datacenters first (flexible share, then
  move to backup generation), firm load last, pro rata by zone.
* :func:`allocate_network`: the least weighted shed that covers the shortfall and
  keeps the monitored branches within their limits (linear program, HiGHS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linprog

from gridflow.errors import ScenarioError

#: default LP cost per MW shed, by kind: datacenters are the cheapest to shed (curtailing the
#: flexible share costs least, moving a site to its backup generation more), firm load by far
#: the most (customers go dark), so the LP only sheds firm load where the datacenters cannot do
#: the job (not enough of them, or in the wrong place for the network)
COSTS = {"flexible": 1.0, "backup": 2.0, "firm": 10.0}
#: LP penalty per MW of branch-limit violation left, as a multiple of the largest shed cost:
#: a bus is shed to relieve a branch only while 1 MW there relieves more than 1/1000 MW
VIOLATION_PENALTY = 1e3
#: LP penalty per MW of shortfall left uncovered, as a multiple of the largest shed cost (above
#: the violation penalty: the capacity shortfall is the harder obligation)
UNMET_PENALTY = 1e4
#: MW; LP values below this are taken as zero (solver noise)
MIN_SHED_MW = 1e-6
KINDS = ("flexible", "backup", "firm")
_TOL = 1e-9


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True, eq=False)
class ShedProblem:
    """What must be shed and from what. Arrays (nb,) over the case's buses.

    Attributes
    ----------
    firm_p_mw, firm_q_mvar : float (nb,)
        Firm (non-datacenter) load at each bus, MW (>= 0) and MVAr.
    flex_p_mw : float (nb,)
        Datacenters' flexible share at each bus, MW (>= 0): curtailable first.
    dc_p_mw : float (nb,)
        Datacenters' non-flexible part at each bus, MW (>= 0): can move to backup generation.
        A bus's datacenter load is ``flex_p_mw + dc_p_mw``.
    dc_q_mvar : float (nb,)
        Total datacenter Q at each bus (flexible + rest), MVAr.
    zone : object (nb,)
        Zone name of each bus (str; ``""`` = no zone: those buses form a group of their own).
    critical : bool (nb,)
        Never shed anything at these buses.
    shortfall_mw : float
        Total MW that must be shed (>= 0).
    zone_ratio : dict or None
        Pro-rata table ``zone -> share`` (any non-negative numbers; only ratios matter). Zones
        not in the table get share 0 (they shed only when the others cannot cover). Default:
        each zone's share of the load (firm + datacenter, critical buses included).

    Bad input (NaN or infinite numbers, negative MW, shapes that differ, a negative
    shortfall, an unknown zone or a negative share in ``zone_ratio``) raises
    :class:`~gridflow.errors.ScenarioError`. Arrays are copied (float64, read-only).
    """

    firm_p_mw: np.ndarray
    firm_q_mvar: np.ndarray
    flex_p_mw: np.ndarray
    dc_p_mw: np.ndarray
    dc_q_mvar: np.ndarray
    zone: np.ndarray
    critical: np.ndarray
    shortfall_mw: float
    zone_ratio: dict | None = None

    def __post_init__(self):
        nb = None
        for name in ("firm_p_mw", "firm_q_mvar", "flex_p_mw", "dc_p_mw", "dc_q_mvar"):
            try:
                a = np.array(getattr(self, name), dtype=np.float64, copy=True)
            except (TypeError, ValueError):
                raise ScenarioError(f"shed problem: {name} is not an array of numbers") from None
            nb = _check_shape(a, name, nb)
            bad = ~np.isfinite(a)
            if bad.any():
                raise ScenarioError(f"shed problem: {name} is {a[bad][0]} at bus position {np.flatnonzero(bad)[0]}")
            if name.endswith("_mw"):
                if (a < -_TOL).any():
                    i = int(np.flatnonzero(a < -_TOL)[0])
                    raise ScenarioError(f"shed problem: {name} is negative ({a[i]:g} MW) at bus position {i}")
                a = np.maximum(a, 0.0)
            a.flags.writeable = False
            object.__setattr__(self, name, a)
        zone = np.array(["" if z is None else str(z) for z in np.asarray(self.zone, dtype=object).ravel()],
                        dtype=object).reshape(np.shape(self.zone))
        _check_shape(zone, "zone", nb)
        zone.flags.writeable = False
        object.__setattr__(self, "zone", zone)
        crit = np.asarray(self.critical)
        if crit.dtype != bool:
            raise ScenarioError(f"shed problem: critical must be a bool array, got {crit.dtype}")
        crit = crit.copy()
        _check_shape(crit, "critical", nb)
        crit.flags.writeable = False
        object.__setattr__(self, "critical", crit)
        try:
            s = float(self.shortfall_mw)
        except (TypeError, ValueError):
            raise ScenarioError(f"shed problem: shortfall_mw must be a number, got {self.shortfall_mw!r}") from None
        if not np.isfinite(s) or s < 0:
            raise ScenarioError(f"shed problem: shortfall_mw must be a finite number >= 0, got {s:g}")
        object.__setattr__(self, "shortfall_mw", s)
        if self.zone_ratio is not None:
            if not isinstance(self.zone_ratio, dict):
                raise ScenarioError("shed problem: zone_ratio must be a dict zone -> share")
            known = set(zone)
            ratio = {}
            for k, v in self.zone_ratio.items():
                if str(k) not in known:
                    raise ScenarioError(f"shed problem: unknown zone {k!r} in zone_ratio")
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise ScenarioError(f"shed problem: zone_ratio share of {k!r} is not a number: {v!r}") from None
                if not np.isfinite(v) or v < 0:
                    raise ScenarioError(f"shed problem: zone_ratio share of {k!r} must be a finite number >= 0, "
                                        f"got {v:g}")
                ratio[str(k)] = v
            object.__setattr__(self, "zone_ratio", ratio)

    @property
    def nb(self) -> int:
        return len(self.firm_p_mw)

    @property
    def dc_total_p_mw(self) -> np.ndarray:
        """Datacenter load at each bus, MW: flexible share + the rest."""
        return self.flex_p_mw + self.dc_p_mw

    def sheddable(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MW that may be shed at each bus, by kind (flexible, backup, firm): 0 at critical buses."""
        keep = ~self.critical
        return (np.where(keep, self.flex_p_mw, 0.0), np.where(keep, self.dc_p_mw, 0.0),
                np.where(keep, self.firm_p_mw, 0.0))


def _check_shape(a, name, nb):
    if a.ndim != 1 or (nb is not None and len(a) != nb):
        want = "(nb,)" if nb is None else f"({nb},)"
        raise ScenarioError(f"shed problem: {name} has shape {a.shape}, expected {want}")
    return len(a) if nb is None else nb


@dataclass(frozen=True, eq=False)
class Allocation:
    """A shed: MW and MVAr per bus (nb,) by kind.

    Attributes
    ----------
    policy : str
        The policy that made it.
    p_flex_mw, p_backup_mw, p_firm_mw : float (nb,)
        MW shed at each bus: datacenter flexible share curtailed; datacenter load moved to its
        backup generation; firm load shed.
    q_flex_mvar, q_backup_mvar, q_firm_mvar : float (nb,)
        The matching MVAr (same power factor as the load each comes from).
    total_mw : float
        Total MW shed (all kinds).
    shortfall_mw : float
        The MW that had to be shed.
    unmet_mw : float
        Shortfall left uncovered: > 0 only when shedding everything sheddable cannot cover it.
    driver : str
        The limit that drove the shed: "capacity" (default), "overload", "voltage", "collapse"
        (the runner sets it for network-driven shed; it may join several with "+").
    max_violation_mw : float
        :func:`allocate_network`: the largest branch-limit violation left, MW (0 when the
        monitored branches are all within their limits after the shed).
    zone : object (nb,) or None
        Zone of each bus (from the problem), for :meth:`by_zone`.
    """

    policy: str
    p_flex_mw: np.ndarray
    p_backup_mw: np.ndarray
    p_firm_mw: np.ndarray
    q_flex_mvar: np.ndarray
    q_backup_mvar: np.ndarray
    q_firm_mvar: np.ndarray
    total_mw: float
    shortfall_mw: float
    unmet_mw: float
    driver: str = "capacity"
    max_violation_mw: float = 0.0
    zone: np.ndarray | None = field(default=None, repr=False)

    @property
    def p_mw(self) -> np.ndarray:
        """MW shed at each bus, all kinds."""
        return self.p_flex_mw + self.p_backup_mw + self.p_firm_mw

    @property
    def q_mvar(self) -> np.ndarray:
        """MVAr shed at each bus, all kinds."""
        return self.q_flex_mvar + self.q_backup_mvar + self.q_firm_mvar

    @classmethod
    def none(cls, nb: int, policy: str, *, zone=None, shortfall_mw: float = 0.0) -> Allocation:
        """No shed at all over ``nb`` buses (``shortfall_mw`` still recorded)."""
        z = np.zeros(nb)
        z.flags.writeable = False
        return cls(policy=policy, p_flex_mw=z, p_backup_mw=z, p_firm_mw=z, q_flex_mvar=z, q_backup_mvar=z,
                   q_firm_mvar=z, total_mw=0.0, shortfall_mw=float(shortfall_mw), unmet_mw=0.0, driver="none",
                   zone=zone)

    def plus(self, other: Allocation, *, driver: str | None = None) -> Allocation:
        """Both sheds together: MW and MVAr per bus and kind, totals, shortfalls and unmet MW add; the
        largest violation is kept; the zones are this allocation's (or ``other``'s if this has none);
        ``driver`` defaults to this one's."""
        if len(self.p_firm_mw) != len(other.p_firm_mw):
            raise ScenarioError(f"cannot add allocations over {len(self.p_firm_mw)} and {len(other.p_firm_mw)} buses")
        arrays = {k: getattr(self, k) + getattr(other, k) for k in _ARRAYS}
        for a in arrays.values():
            a.flags.writeable = False
        return Allocation(policy=self.policy, total_mw=self.total_mw + other.total_mw,
                          shortfall_mw=self.shortfall_mw + other.shortfall_mw, unmet_mw=self.unmet_mw + other.unmet_mw,
                          driver=self.driver if driver is None else driver,
                          max_violation_mw=max(self.max_violation_mw, other.max_violation_mw),
                          zone=self.zone if self.zone is not None else other.zone, **arrays)

    def __add__(self, other: Allocation) -> Allocation:
        return self.plus(other)

    def by_zone(self, zone=None) -> pd.DataFrame:
        """MW shed per zone: columns zone, p_flex_mw, p_backup_mw, p_firm_mw, total_mw (sorted by zone).

        ``zone`` (nb,) overrides the zones the allocation carries (an Allocation built by hand
        carries none).
        """
        zone = self.zone if zone is None else np.asarray(zone, dtype=object)
        if zone is None:
            raise ScenarioError("this allocation carries no zones: pass by_zone(zone=...)")
        df = pd.DataFrame({"zone": zone, "p_flex_mw": self.p_flex_mw, "p_backup_mw": self.p_backup_mw,
                           "p_firm_mw": self.p_firm_mw})
        g = df.groupby("zone", sort=True)[["p_flex_mw", "p_backup_mw", "p_firm_mw"]].sum().reset_index()
        g["total_mw"] = g["p_flex_mw"] + g["p_backup_mw"] + g["p_firm_mw"]
        return g


_ARRAYS = ("p_flex_mw", "p_backup_mw", "p_firm_mw", "q_flex_mvar", "q_backup_mvar", "q_firm_mvar")


def _ratio(p, p_load, q_load):
    """Q for P shed out of a load (p_load, q_load) at the load's power factor."""
    return np.divide(p * q_load, p_load, out=np.zeros_like(p), where=p_load > 0)


def _allocation(policy, problem: ShedProblem, p_flex, p_backup, p_firm, unmet, **kw) -> Allocation:
    flex_ub, backup_ub, firm_ub = problem.sheddable()
    # clip rounding: never below zero, never above the load of the kind
    p_flex = np.clip(p_flex, 0.0, flex_ub)
    p_backup = np.clip(p_backup, 0.0, backup_ub)
    p_firm = np.clip(p_firm, 0.0, firm_ub)
    dc = problem.dc_total_p_mw
    arrays = dict(p_flex_mw=p_flex, p_backup_mw=p_backup, p_firm_mw=p_firm,
                  q_flex_mvar=_ratio(p_flex, dc, problem.dc_q_mvar),
                  q_backup_mvar=_ratio(p_backup, dc, problem.dc_q_mvar),
                  q_firm_mvar=_ratio(p_firm, problem.firm_p_mw, problem.firm_q_mvar))
    for a in arrays.values():
        a.flags.writeable = False
    total = float(p_flex.sum() + p_backup.sum() + p_firm.sum())
    return Allocation(policy=policy, total_mw=total, shortfall_mw=problem.shortfall_mw,
                      unmet_mw=float(max(unmet, 0.0)), zone=problem.zone, **arrays, **kw)


# ------------------------------------------------------------------------------------ pro rata


def _water_fill(total: float, weight: np.ndarray, cap: np.ndarray) -> tuple[np.ndarray, float]:
    """Share ``total`` over groups in proportion to ``weight``, none above its ``cap``.

    A group whose share exceeds its cap takes its cap and the rest is shared again over the
    groups still open, in proportion to their weights (repeated until nothing is left or every
    group is full). Groups of weight 0 take part only when the positive-weight groups are all
    full; they then share in proportion to their room. The result is ``min(cap, lam * weight)``
    with one common ``lam`` over the positive weights. Returns (amount per group, unmet).
    """
    assigned = np.zeros(len(cap))
    open_ = cap > 0
    left = float(total)
    tiny = _TOL * max(1.0, float(total))
    while left > tiny and open_.any():
        w = np.where(open_, weight, 0.0)
        if w.sum() <= 0:  # only zero-weight groups are left: share by their room
            w = np.where(open_, cap - assigned, 0.0)
        share = left * w / w.sum()
        room = cap - assigned
        full = open_ & (share >= room - tiny)
        if not full.any():
            assigned += share
            left = 0.0
            break
        left -= float(room[full].sum())
        assigned[full] = cap[full]
        open_ &= ~full
    return assigned, max(left, 0.0)


def zone_shares(problem: ShedProblem) -> pd.Series:
    """The pro-rata table the policy uses, zone -> share (sums to 1 unless every share is 0).

    ``problem.zone_ratio`` when given (zones missing from it: 0), else each zone's share of the
    load (firm + datacenter MW, critical buses included: a zone's obligation follows its load;
    what its critical buses cannot shed is passed to the others).
    """
    names = np.unique(problem.zone)
    if problem.zone_ratio is not None:
        r = pd.Series({z: problem.zone_ratio.get(z, 0.0) for z in names}, dtype=float)
    else:
        load = problem.firm_p_mw + problem.dc_total_p_mw
        r = pd.Series(load).groupby(problem.zone).sum().reindex(names).astype(float)
    total = r.sum()
    return r / total if total > 0 else r


def allocate_pro_rata(problem: ShedProblem) -> Allocation:
    """Pro rata by zone: zone z sheds ``S * r_z / sum(r)``, every load in it the same fraction.

    ``r`` is :func:`zone_shares` (the scenario's table, or each zone's share of the load).
    Within a zone every non-critical load sheds the same fraction of its MW: a bus's firm load
    as kind "firm"; its datacenter load (flexible + rest) by the same fraction, counted as
    "flexible" up to the bus's flexible share and "backup" beyond it.

    Redistribution (water-filling): a zone whose share exceeds its sheddable load (its
    non-critical firm + datacenter MW) sheds all of it, and the rest of its share is spread
    over the other zones by their ratios, repeated until covered. Zones with ratio 0 shed only
    when every other zone is exhausted (then in proportion to their sheddable load). If even
    that cannot cover the shortfall, everything sheddable goes and ``unmet_mw`` is the rest.
    """
    return _pro_rata(problem, "pro-rata")


def _pro_rata(problem: ShedProblem, policy: str) -> Allocation:
    nb = problem.nb
    flex_ub, backup_ub, firm_ub = problem.sheddable()
    dc_ub = flex_ub + backup_ub
    if problem.shortfall_mw <= 0:
        z = np.zeros(nb)
        return _allocation(policy, problem, z, z, z, 0.0)
    names, inv = np.unique(problem.zone, return_inverse=True)
    inv = inv.ravel()
    r = zone_shares(problem).reindex(names).to_numpy()
    cap = np.bincount(inv, weights=firm_ub + dc_ub, minlength=len(names))
    assigned, unmet = _water_fill(problem.shortfall_mw, r, cap)
    frac = np.minimum(np.divide(assigned, cap, out=np.zeros_like(cap), where=cap > 0), 1.0)[inv]
    p_firm = frac * firm_ub
    p_dc = frac * dc_ub
    p_flex = np.minimum(p_dc, flex_ub)
    return _allocation(policy, problem, p_flex, p_dc - p_flex, p_firm, unmet)


# --------------------------------------------------------------------------- large load first


def allocate_large_load_first(problem: ShedProblem) -> Allocation:
    """Datacenters first, firm load last (large loads without their own generation are
    curtailed before firm customers: PJM board decision of January 2026; 2026 DOE orders for
    sites of 50 MW and more).

    Tiers, each taken only for what the earlier ones left:

    1. the datacenters' flexible share, the same fraction at every datacenter bus (kind "flexible");
    2. the datacenters move to their backup generation: the same fraction of every site's
       remaining (non-flexible) load leaves the grid (kind "backup"; ``p_backup_mw`` says how much);
    3. firm load, :func:`allocate_pro_rata` on the firm load alone (zone table
       ``problem.zone_ratio``, or by default each zone's share of the firm load).

    Critical buses shed nothing, datacenters included.
    """
    flex_ub, backup_ub, _ = problem.sheddable()
    left = problem.shortfall_mw
    p_flex = _spread(min(left, flex_ub.sum()), flex_ub)
    left -= p_flex.sum()
    p_backup = _spread(min(max(left, 0.0), backup_ub.sum()), backup_ub)
    left -= p_backup.sum()
    nb = problem.nb
    z = np.zeros(nb)
    firm = ShedProblem(firm_p_mw=problem.firm_p_mw, firm_q_mvar=problem.firm_q_mvar, flex_p_mw=z, dc_p_mw=z,
                       dc_q_mvar=z, zone=problem.zone, critical=problem.critical, shortfall_mw=max(left, 0.0),
                       zone_ratio=problem.zone_ratio)
    rest = _pro_rata(firm, "large-load-first")
    return _allocation("large-load-first", problem, p_flex, p_backup, rest.p_firm_mw, rest.unmet_mw)


def _spread(mw: float, ub: np.ndarray) -> np.ndarray:
    """``mw`` over the buses in proportion to ``ub`` (the same fraction of each)."""
    total = ub.sum()
    if mw <= 0 or total <= 0:
        return np.zeros_like(ub)
    return ub * min(mw / total, 1.0)


# ----------------------------------------------------------------------------------- network LP


def _costs(cost, nb) -> dict:
    cost = {} if cost is None else dict(cost)
    unknown = set(cost) - set(KINDS)
    if unknown:
        raise ScenarioError(f"network allocation: unknown kind {sorted(unknown)[0]!r} in cost "
                            f"(kinds: {', '.join(KINDS)})")
    out = {}
    for k in KINDS:
        try:
            c = np.broadcast_to(np.asarray(cost.get(k, COSTS[k]), dtype=np.float64), (nb,)).copy()
        except (TypeError, ValueError):
            raise ScenarioError(f"network allocation: cost of {k!r} must be a number or an array ({nb},)") from None
        if not np.isfinite(c).all() or (c <= 0).any():
            raise ScenarioError(f"network allocation: cost of {k!r} must be finite and > 0")
        out[k] = c
    return out


def allocate_network(problem: ShedProblem, *, H, flow0_mw, limit_mw, cost=None,
                     min_shed_mw: float | None = None) -> Allocation:
    """The least weighted shed that covers the shortfall and brings the monitored branches within limits.

    Linear program around the current operating point, one variable per bus and kind of
    sheddable load (only buses with sheddable load; none at critical buses)::

        minimise    sum_i,k c_k,i s_k,i  +  P_v * sum_j (v+_j + v-_j)  +  P_u * u
        subject to  sum_i,k s_k,i + u >= shortfall
                    flow0_j + sum_i H_j,i sum_k s_k,i - v+_j <=  limit_j     (each monitored branch j)
                   -flow0_j - sum_i H_j,i sum_k s_k,i - v-_j <=  limit_j
                    0 <= s_k,i <= load of kind k at bus i;  v, u >= 0

    Parameters
    ----------
    problem : ShedProblem
        Loads, critical buses, shortfall (MW; 0 when only the network drives the shed).
        Zones are not used.
    H : array (m, nb), dense or scipy.sparse
        MW change of each monitored branch's flow per MW shed at each bus, generation
        response included (:func:`gridflow.study.sensitivity.shed_sensitivity`).
    flow0_mw : array (m,)
        Branch flows now (MW, the sign convention of ``H``).
    limit_mw : array (m,)
        Flow limit of each branch, MW >= 0 (``inf``: not monitored).
    cost : dict, optional
        Cost per MW shed by kind, ``{"flexible": 1, "backup": 2, "firm": 10}`` by default
        (:data:`COSTS`); each a number or an array (nb,) of per-bus costs, all > 0.
    min_shed_mw : float, optional
        LP values below this many MW are dropped as solver noise (default :data:`MIN_SHED_MW`).

    Returns
    -------
    Allocation
        ``max_violation_mw``: the largest ``|flow0 + H s| - limit`` left (> 0 only when no shed
        can bring a branch within its limit, or only at a price above the violation penalty
        :data:`VIOLATION_PENALTY` x the largest cost per MW of violation; a bus is not worth
        shedding for a branch it relieves by less than 1/1000 MW per MW). ``unmet_mw``: the
        shortfall left (penalty :data:`UNMET_PENALTY` x the largest cost), > 0 only when the
        sheddable load cannot cover it. ``driver``: "overload" if it sheds more than the
        shortfall or a violation is left, else "capacity" (callers may override).

    With no monitored branch (``m = 0`` or every limit infinite) the LP's ties are broken by
    spreading each cost level over its loads in proportion to their MW (cheapest level first),
    instead of the LP's arbitrary vertex. Solved with HiGHS (``scipy.optimize.linprog``), the
    constraint matrix sparse: scales to tens of thousands of buses with a few monitored branches.
    """
    nb = problem.nb
    H = _check_h(H, nb)
    flow0 = _vector(flow0_mw, "flow0_mw", H.shape[0])
    limit = _vector(limit_mw, "limit_mw", H.shape[0], allow_inf=True)
    if (limit < 0).any():
        raise ScenarioError(f"network allocation: limit_mw must be >= 0, got {limit[limit < 0][0]:g}")
    tol = MIN_SHED_MW if min_shed_mw is None else float(min_shed_mw)
    if not np.isfinite(tol) or tol < 0:
        raise ScenarioError(f"network allocation: min_shed_mw must be a finite number >= 0, got {min_shed_mw!r}")
    costs = _costs(cost, nb)
    ubs = dict(zip(KINDS, problem.sheddable(), strict=True))
    mon = np.flatnonzero(np.isfinite(limit))
    if len(mon) == 0:
        shed = _cheapest_first(problem.shortfall_mw, ubs, costs)
        unmet = problem.shortfall_mw - sum(v.sum() for v in shed.values())
        return _allocation("network", problem, shed["flexible"], shed["backup"], shed["firm"], unmet)

    s, bus_of, kind_of = _solve_lp(problem.shortfall_mw, ubs, costs, H[mon], flow0[mon], limit[mon])
    s[s < tol] = 0.0
    shed = {k: np.zeros(nb) for k in KINDS}
    for j, k in enumerate(KINDS):
        sel = kind_of == j
        np.add.at(shed[k], bus_of[sel], s[sel])
    total_bus = shed["flexible"] + shed["backup"] + shed["firm"]
    flow = flow0[mon] + H[mon] @ total_bus
    violation = float(np.max(np.maximum(np.abs(flow) - limit[mon], 0.0), initial=0.0))
    unmet = max(problem.shortfall_mw - float(total_bus.sum()), 0.0)
    if unmet <= tol:
        unmet = 0.0
    driver = "overload" if total_bus.sum() > problem.shortfall_mw + 1e-6 or violation > 1e-6 else "capacity"
    return _allocation("network", problem, shed["flexible"], shed["backup"], shed["firm"], unmet,
                       driver=driver, max_violation_mw=violation)


def _solve_lp(shortfall, ubs, costs, H, flow0, limit):
    """The network LP (see :func:`allocate_network`). Returns (s, bus of each s, kind index of each s).

    Variables: ``s`` one per bus and kind with sheddable load; ``X`` the total shed of each bus
    with more than one kind (linked by ``X_b = sum_k s_bk``); ``f`` the monitored flows (free,
    ``f = flow0 + H x`` with ``x`` the bus totals); the slacks ``v+``, ``v-`` (m) and ``u``.
    Each bus enters the dense flow rows once, so they hold m x (buses with load) entries.
    """
    bus_of, kind_of, ub, c = [], [], [], []
    for j, k in enumerate(KINDS):
        idx = np.flatnonzero(ubs[k] > 0)
        bus_of.append(idx)
        kind_of.append(np.full(len(idx), j))
        ub.append(ubs[k][idx])
        c.append(costs[k][idx])
    bus_of, kind_of, ub, c = (np.concatenate(a) for a in (bus_of, kind_of, ub, c))
    n, m = len(bus_of), len(flow0)
    cmax = max(float(v.max()) for v in costs.values())
    buses, first, count = np.unique(bus_of, return_index=True, return_counts=True)
    multi = buses[count > 1]
    nx = len(multi)
    # column of each bus in the flow rows: its only s, or its X
    col = np.full(len(ubs["firm"]), -1)
    col[buses] = first
    col[multi] = n + np.arange(nx)
    Hx = H[:, buses].tocoo()
    keep = np.abs(Hx.data) >= 1e-10
    Hx = sp.coo_matrix((Hx.data[keep], (Hx.row[keep], Hx.col[keep])), shape=Hx.shape)
    nv = n + nx + 3 * m + 1  # s, X, f, v+, v-, u
    i_f, i_vp, i_vm, i_u = n + nx, n + nx + m, n + nx + 2 * m, n + nx + 3 * m
    ar = np.arange(m)
    # equalities: H x - f = -flow0 (m rows), X_b - sum_k s_bk = 0 (nx rows)
    link_rows = np.searchsorted(multi, bus_of[np.isin(bus_of, multi)])
    link_cols = np.flatnonzero(np.isin(bus_of, multi))
    A_eq = sp.csr_matrix((np.r_[Hx.data, -np.ones(m), np.ones(nx), -np.ones(len(link_cols))],
                          (np.r_[Hx.row, ar, m + np.arange(nx), m + link_rows],
                           np.r_[col[buses][Hx.col], i_f + ar, n + np.arange(nx), link_cols])), shape=(m + nx, nv))
    b_eq = np.r_[-flow0, np.zeros(nx)]
    # inequalities: f - v+ <= limit, -f - v- <= limit, -sum s - u <= -shortfall
    A_ub = sp.csr_matrix((np.r_[np.ones(m), -np.ones(m), -np.ones(m), -np.ones(m), -np.ones(n), -1.0],
                          (np.r_[ar, ar, m + ar, m + ar, np.full(n + 1, 2 * m)],
                           np.r_[i_f + ar, i_vp + ar, i_f + ar, i_vm + ar, np.arange(n), i_u])), shape=(2 * m + 1, nv))
    b_ub = np.r_[limit, limit, -shortfall]
    obj = np.r_[c, np.zeros(nx + m), np.full(2 * m, VIOLATION_PENALTY * cmax), UNMET_PENALTY * cmax]
    xmax = np.bincount(bus_of, weights=ub, minlength=len(col))[multi]
    lo = np.r_[np.zeros(n + nx), np.full(m, -np.inf), np.zeros(2 * m + 1)]
    hi = np.r_[ub, xmax, np.full(3 * m + 1, np.inf)]
    res = linprog(obj, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=np.column_stack([lo, hi]),
                  method="highs", options={"presolve": False})
    if res.status != 0 or res.x is None:
        raise ScenarioError(f"network allocation: the linear program failed ({res.message})")
    return np.clip(res.x[:n], 0.0, ub), bus_of, kind_of


def _cheapest_first(total: float, ubs: dict, costs: dict) -> dict:
    """Optimal shed with no network constraint: cost levels in ascending order, each level
    taken in proportion to its loads' MW until ``total`` is covered."""
    shed = {k: np.zeros_like(ubs[k]) for k in KINDS}
    left = float(total)
    levels = np.unique(np.concatenate([costs[k][ubs[k] > 0] for k in KINDS]))
    for level in levels:
        if left <= 0:
            break
        sel = {k: (costs[k] == level) & (ubs[k] > 0) for k in KINDS}
        avail = sum(float(ubs[k][sel[k]].sum()) for k in KINDS)
        if avail <= 0:
            continue
        f = min(left / avail, 1.0)
        for k in KINDS:
            shed[k] = np.where(sel[k], ubs[k] * f, shed[k])
        left -= f * avail
    return shed


def _check_h(H, nb) -> sp.csr_matrix:
    try:
        H = sp.csr_matrix(H, dtype=np.float64) if sp.issparse(H) else sp.csr_matrix(
            np.asarray(H, dtype=np.float64).reshape(-1, nb) if np.size(H) == 0 else np.asarray(H, dtype=np.float64))
    except (TypeError, ValueError):
        raise ScenarioError("network allocation: H is not a matrix of numbers") from None
    if H.ndim != 2 or H.shape[1] != nb:
        raise ScenarioError(f"network allocation: H has shape {H.shape}, expected (m, {nb})")
    if not np.isfinite(H.data).all():
        raise ScenarioError("network allocation: H has NaN or infinite entries")
    return H


def _vector(a, name, m, allow_inf=False) -> np.ndarray:
    try:
        a = np.asarray(a, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ScenarioError(f"network allocation: {name} is not an array of numbers") from None
    if len(a) != m:
        raise ScenarioError(f"network allocation: {name} has {len(a)} entries, H has {m} rows")
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if bad.any():
        raise ScenarioError(f"network allocation: {name} has a NaN{'' if allow_inf else ' or infinite'} entry "
                            f"(row {np.flatnonzero(bad)[0]})")
    return a
