"""Load-shed allocation policies: who sheds how many MW, by kind, bus by bus.

All policies never touch critical buses, never shed more than a bus's load of
each kind, and keep each load's power factor (Q shed = P shed x the load's
Q/P). Kinds: ``flexible`` (the datacenters' curtailable share), ``backup``
(datacenter load moved to its backup generation: it leaves the grid) and
``firm`` (everyone else's load).

* :func:`allocate_pro_rata` — the operators' rule (ERCOT's load-shed table,
  PJM's manual load dump by zone): zone z sheds ``S r_z / sum(r)`` with ``r`` a
  ratio table (default: each zone's share of load); within a zone every load
  sheds the same fraction (a datacenter's part counts as flexible up to its
  flexible share, then backup). A zone that cannot cover its share (critical
  load) passes the rest to the others in proportion to their ratios
  (water-filling).
* :func:`allocate_large_load_first` — tiers, as PJM's board decided in January
  2026 for new large loads without their own generation and as the 2026 DOE
  orders allow for sites of 50 MW or more: (1) the datacenters' flexible share,
  (2) datacenters to backup generation, (3) firm load pro-rata.
* :func:`allocate_network` — the least weighted shed that covers the shortfall
  and keeps the monitored branches within their limits, a linear program
  around the current operating point solved with HiGHS
  (``scipy.optimize.linprog``)::

      minimise   sum_i sum_k c_k s_ik + M sum_l (u_l + v_l)
      subject to sum_ik s_ik >= S
                 flow0_l + sum_i H_li s_i <= limit_l + u_l
                -flow0_l - sum_i H_li s_i <= limit_l + v_l
                 0 <= s_ik <= load_ik     (0 at critical buses)

  with ``s_i = sum_k s_ik``, costs ``c`` = 1 (flexible), 2 (backup), 10 (firm)
  and penalty ``M`` = 1e4 per MW of remaining violation (reported as
  ``max_violation_mw``).

Units: MW, MVAr.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linprog

from gridflow.errors import ScenarioError

COST = {"flexible": 1.0, "backup": 2.0, "firm": 10.0}
VIOLATION_PENALTY = 1e4
#: buses whose largest |sensitivity| to a monitored branch is below this (MW/MW) do not enter
#: the network LP unless a shortfall must be covered
MIN_SENSITIVITY = 1e-4


@dataclass(frozen=True)
class ShedProblem:
    """What may be shed, per bus (nb,), MW / MVAr."""

    firm_p_mw: np.ndarray
    firm_q_mvar: np.ndarray
    flex_p_mw: np.ndarray  # datacenters' flexible share
    dc_p_mw: np.ndarray  # datacenters' other load (can move to backup generation)
    dc_q_mvar: np.ndarray  # datacenters' total Q (flexible + other)
    zone: np.ndarray  # object, zone name per bus ("" = none)
    critical: np.ndarray  # bool, never shed
    shortfall_mw: float
    zone_ratio: dict | None = None

    def __post_init__(self):
        for name in ("firm_p_mw", "firm_q_mvar", "flex_p_mw", "dc_p_mw", "dc_q_mvar"):
            a = np.asarray(getattr(self, name), dtype=float)
            if not np.isfinite(a).all():
                raise ScenarioError(f"load shed problem: {name} has NaN or infinite values")
            if name.endswith("p_mw") and (a < -1e-9).any():
                raise ScenarioError(f"load shed problem: {name} is negative")
        if not np.isfinite(self.shortfall_mw) or self.shortfall_mw < 0:
            raise ScenarioError(f"load shed problem: shortfall must be >= 0 MW, got {self.shortfall_mw}")
        if self.zone_ratio:
            unknown = set(self.zone_ratio) - set(self.zone)
            if unknown:
                raise ScenarioError(f"zone_ratio names unknown zone {sorted(unknown)[0]!r}")


@dataclass(frozen=True)
class Allocation:
    """Shed per bus (nb,) by kind, MW / MVAr, and what drove it."""

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

    def by_zone(self, zone: np.ndarray) -> pd.DataFrame:
        df = pd.DataFrame({"zone": zone, "p_flex_mw": self.p_flex_mw, "p_backup_mw": self.p_backup_mw,
                           "p_firm_mw": self.p_firm_mw})
        g = df.groupby("zone").sum()
        g["total_mw"] = g.sum(axis=1)
        return g.reset_index()


def _dc_pf(problem):
    tot = problem.flex_p_mw + problem.dc_p_mw
    return np.divide(problem.dc_q_mvar, tot, out=np.zeros_like(tot), where=tot > 0)


def _make(policy, problem, p_flex, p_backup, p_firm, shortfall) -> Allocation:
    k_dc = _dc_pf(problem)
    k_firm = np.divide(problem.firm_q_mvar, problem.firm_p_mw, out=np.zeros_like(p_firm),
                       where=problem.firm_p_mw > 0)
    total = float(p_flex.sum() + p_backup.sum() + p_firm.sum())
    return Allocation(policy=policy, p_flex_mw=p_flex, p_backup_mw=p_backup, p_firm_mw=p_firm,
                      q_flex_mvar=p_flex * k_dc, q_backup_mvar=p_backup * k_dc, q_firm_mvar=p_firm * k_firm,
                      total_mw=total, shortfall_mw=float(shortfall), unmet_mw=float(max(shortfall - total, 0.0)))


def _zone_fractions(amount, zone, ratio: dict, need: float) -> dict:
    """Water-filling: zone shares of ``need`` in proportion to ``ratio``, capped at each zone's ``amount``."""
    zones = [z for z in ratio if ratio[z] > 0 and amount.get(z, 0.0) > 0]
    share = {z: 0.0 for z in zones}
    left = need
    active = list(zones)
    for _ in range(len(zones) + 1):
        if left <= 1e-9 or not active:
            break
        rsum = sum(ratio[z] for z in active)
        give = {z: left * ratio[z] / rsum for z in active}
        left = 0.0
        still = []
        for z in active:
            room = amount[z] - share[z]
            if give[z] >= room:
                share[z] = amount[z]
                left += give[z] - room
            else:
                share[z] += give[z]
                still.append(z)
        active = still
    return share


def _pro_rata(problem, need, *, firm=True, dc=True):
    """Every load in a zone sheds the same fraction; zones by the ratio table (default: load share)."""
    ok = ~np.asarray(problem.critical, bool)
    firm_p = np.where(ok & firm, problem.firm_p_mw, 0.0)
    dc_p = np.where(ok & dc, problem.flex_p_mw + problem.dc_p_mw, 0.0)
    avail = firm_p + dc_p
    zone = np.asarray(problem.zone, dtype=object)
    amount = pd.Series(avail).groupby(zone).sum().to_dict()
    if problem.zone_ratio:
        ratio = {z: float(problem.zone_ratio.get(z, 0.0)) for z in amount}
    else:
        load = pd.Series(problem.firm_p_mw + problem.flex_p_mw + problem.dc_p_mw).groupby(zone).sum()
        ratio = load.to_dict()
    share = _zone_fractions(amount, zone, ratio, need)
    frac = np.array([share.get(z, 0.0) / amount[z] if amount.get(z, 0.0) > 0 else 0.0 for z in zone])
    frac = np.clip(frac, 0.0, 1.0)
    p_firm = firm_p * frac
    dc_shed = dc_p * frac
    p_flex = np.minimum(dc_shed, np.where(ok & dc, problem.flex_p_mw, 0.0))
    return p_flex, dc_shed - p_flex, p_firm


def allocate_pro_rata(problem: ShedProblem) -> Allocation:
    """Zone z sheds S r_z / sum(r); inside a zone every load the same fraction."""
    p_flex, p_backup, p_firm = _pro_rata(problem, problem.shortfall_mw)
    return _make("pro-rata", problem, p_flex, p_backup, p_firm, problem.shortfall_mw)


def allocate_large_load_first(problem: ShedProblem) -> Allocation:
    """Datacenters' flexible share, then datacenters to backup generation, then firm load pro-rata."""
    ok = ~np.asarray(problem.critical, bool)
    need = problem.shortfall_mw
    flex = np.where(ok, problem.flex_p_mw, 0.0)
    k = min(1.0, need / flex.sum()) if flex.sum() > 0 else 0.0
    p_flex = flex * k
    need -= p_flex.sum()
    dc = np.where(ok, problem.dc_p_mw, 0.0)
    k = min(1.0, max(need, 0.0) / dc.sum()) if dc.sum() > 0 else 0.0
    p_backup = dc * k
    need -= p_backup.sum()
    p_firm = np.zeros_like(p_flex)
    if need > 1e-9:
        _, _, p_firm = _pro_rata(problem, need, dc=False)
    return _make("large-load-first", problem, p_flex, p_backup, p_firm, problem.shortfall_mw)


def allocate_network(problem: ShedProblem, *, H, flow0_mw, limit_mw, cost: dict | None = None) -> Allocation:
    """Least weighted shed covering the shortfall with every monitored branch within its limit.

    Parameters
    ----------
    H : (m, nb) array, MW of flow change on each monitored branch per MW shed at each bus
        (generation response included; see :func:`gridflow.study.sensitivity.shed_sensitivity`).
    flow0_mw : (m,) present flows, MW (signed, from-end).
    limit_mw : (m,) allowed |flow|, MW.
    cost : {"flexible", "backup", "firm"} -> cost per MW (default ``COST``).
    """
    cost = {**COST, **(cost or {})}
    H = np.asarray(H, float).reshape(-1, len(problem.firm_p_mw))
    flow0 = np.asarray(flow0_mw, float)
    limit = np.asarray(limit_mw, float)
    m = H.shape[0]
    ok = ~np.asarray(problem.critical, bool)
    caps = {"flexible": np.where(ok, problem.flex_p_mw, 0.0), "backup": np.where(ok, problem.dc_p_mw, 0.0),
            "firm": np.where(ok, problem.firm_p_mw, 0.0)}
    relevant = np.abs(H).max(axis=0, initial=0.0) > MIN_SENSITIVITY
    if problem.shortfall_mw > 0:
        relevant[:] = True
    cols, ub, c = [], [], []
    for kind in ("flexible", "backup", "firm"):
        idx = np.flatnonzero(relevant & (caps[kind] > 1e-9))
        cols.append((kind, idx))
        ub.append(caps[kind][idx])
        c.append(np.full(len(idx), cost[kind]))
    n = sum(len(i) for _, i in cols)
    bus_of = np.concatenate([i for _, i in cols]) if n else np.zeros(0, np.int64)
    c = np.concatenate(c + [np.full(2 * m, VIOLATION_PENALTY)])
    bounds_ub = np.concatenate(ub + [np.full(2 * m, np.inf)])
    Hs = sp.csr_matrix(H[:, bus_of]) if m else sp.csr_matrix((0, n))
    eye = sp.identity(m, format="csr")
    rows = [sp.hstack([Hs, -eye, sp.csr_matrix((m, m))]), sp.hstack([-Hs, sp.csr_matrix((m, m)), -eye])]
    b = [limit - flow0, limit + flow0]
    if problem.shortfall_mw > 0:
        rows.append(sp.hstack([sp.csr_matrix(-np.ones((1, n))), sp.csr_matrix((1, 2 * m))]))
        b.append(np.array([-min(problem.shortfall_mw, bounds_ub[:n].sum())]))
    A = sp.vstack(rows).tocsr()
    res = linprog(c, A_ub=A, b_ub=np.concatenate(b), bounds=np.column_stack([np.zeros(len(c)), bounds_ub]),
                  method="highs")
    if res.status != 0:
        raise ScenarioError(f"the network load-shed LP failed: {res.message}")
    x = res.x
    out = {}
    start = 0
    for kind, idx in cols:
        v = np.zeros(len(problem.firm_p_mw))
        v[idx] = np.minimum(np.maximum(x[start:start + len(idx)], 0.0), caps[kind][idx])
        out[kind] = v
        start += len(idx)
    a = _make("network", problem, out["flexible"], out["backup"], out["firm"], problem.shortfall_mw)
    viol = float(x[n:].max(initial=0.0))
    return Allocation(**{**a.__dict__, "max_violation_mw": viol})
