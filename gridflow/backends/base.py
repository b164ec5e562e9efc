"""The backend seam: what the one Newton engine needs from a CPU or a GPU.

The engine (:func:`gridflow.newton.newton`) is written once over an array
module ``xp``. Everything that differs between devices sits behind two small
interfaces:

* :class:`Backend` — chosen once (``backend="cpu"|"gpu"``), carried as a value
  by :class:`gridflow.model.PowerFlowModel`; it makes
* :class:`BatchOps` — the operations of one batched solve (T scenarios on one
  topology and one Jacobian pattern): ``Ibus = Ybus_t V_t`` with each
  scenario's outages, Newton steps ``J(V_t)^-1 F_t`` with each scenario's pinned
  rows, and chord steps with one shared factorization.

The data both receive is :class:`BatchSpec`, plain host arrays made by the
model: the outaged branches of each scenario (Ybus changes by their four
admittances; the pattern does not) and the pinned Jacobian rows of each
scenario (a pinned row is the identity: de-energized buses, a PV bus's Q row,
an island's own slack bus).

Conventions: per unit; ``V`` complex128 (k, nb); ``F`` float64 (k, n) with
n = ``pattern.n``; ``idx`` int64 (k,) the scenarios' positions in the batch
(0..T-1). Steps solve ``J d = F`` (the engine subtracts ``d``). A singular
Jacobian gives a row of NaN, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class BranchTerms:
    """Each branch's four Ybus admittances and their storage positions in ``Ybus.data`` (nl,) each.

    ``Yff, Yft, Ytf, Ytt`` complex128; ``pff, pft, ptf, ptt`` int64. Taking branch k out of
    service subtracts ``Yff[k]`` at ``pff[k]`` and so on (the pattern keeps the entries).
    """

    f: np.ndarray
    t: np.ndarray
    Yff: np.ndarray
    Yft: np.ndarray
    Ytf: np.ndarray
    Ytt: np.ndarray
    pff: np.ndarray
    pft: np.ndarray
    ptf: np.ndarray
    ptt: np.ndarray


@dataclass(frozen=True)
class BatchSpec:
    """Per-scenario structure of one batch (host arrays).

    Attributes
    ----------
    T : int
        Scenarios.
    out_t, out_k : int64 (m,)
        Scenario t has branch k out of service, for every pair (may be empty).
    free : bool (T, n) or None
        False where a Jacobian row is pinned in that scenario (None: nothing pinned).
    terms : BranchTerms or None
        Needed when there are outages.
    threads : int or None
        CPU threads for this batch (None: the backend's default).
    """

    T: int
    out_t: np.ndarray
    out_k: np.ndarray
    free: np.ndarray | None = None
    terms: BranchTerms | None = None
    threads: int | None = None

    @property
    def has_outages(self) -> bool:
        return len(self.out_t) > 0


@runtime_checkable
class BatchOps(Protocol):
    """One batched solve's device operations (see the module docstring)."""

    xp: Any

    def to_device(self, a): ...

    def to_host(self, a): ...

    def ibus(self, idx, V):
        """``Ybus_t @ V_t`` for the scenarios ``idx`` (k,), V (k, nb) -> complex (k, nb)."""

    def newton_step(self, idx, V, Ibus, F, w):
        """Solve ``J(V_t) d = F_t`` per scenario (outages and pinned rows applied); NaN rows where singular.

        ``w``: participation factors (k, nb) for a distributed-slack pattern, else None.
        """

    def chord_factorize(self, V, Ibus, w) -> None:
        """Factorize the Jacobian J0 at one voltage (nb,) of the base topology (no outage), with the first
        scenario's rows pinned (a backend may leave them free: then a single case's chord is not its own
        Jacobian); a backend may also prepare each other scenario's own start Jacobian as a low-rank change
        of J0 (:mod:`gridflow.compensation`).

        Raises :class:`gridflow.linalg.SingularJacobian` if J0 is singular.
        """

    def chord_solve(self, idx, F):
        """Chord steps for the scenarios ``idx`` (k,): solve ``J0 d = F`` (or the scenario's compensated
        start Jacobian) for every row of F (k, n)."""

    def close(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """A device: makes the :class:`BatchOps` of each batched solve."""

    name: str
    xp: Any

    def batch_ops(self, model, pattern, spec: BatchSpec) -> BatchOps:
        """The operations for one solve of ``spec.T`` scenarios with ``pattern`` on ``model``'s network."""
