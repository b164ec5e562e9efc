"""Load-shed policies of the study behind one interface, chosen once by name.

A :class:`Policy` turns a :class:`~gridflow.study.allocation.ShedProblem` (loads,
zones, what must go) into an :class:`~gridflow.study.allocation.Allocation`.
The study picks one with :func:`get_policy` when it starts and passes the
object on; nothing else looks at the policy's name.
"""

from __future__ import annotations

from typing import Protocol

from gridflow.errors import ScenarioError
from gridflow.study import allocation as alloc


class Policy(Protocol):
    """Who sheds how much: ``allocate(problem) -> Allocation``."""

    name: str

    def allocate(self, problem: alloc.ShedProblem) -> alloc.Allocation: ...


class ProRata:
    """Every zone its share of the shortfall (:func:`~gridflow.study.allocation.allocate_pro_rata`)."""

    name = "pro-rata"

    def allocate(self, problem: alloc.ShedProblem) -> alloc.Allocation:
        return alloc.allocate_pro_rata(problem)


class LargeLoadFirst:
    """Datacenters first, firm load last (:func:`~gridflow.study.allocation.allocate_large_load_first`)."""

    name = "large-load-first"

    def allocate(self, problem: alloc.ShedProblem) -> alloc.Allocation:
        return alloc.allocate_large_load_first(problem)


class Network:
    """The cheapest shed anywhere that covers the shortfall and the monitored branch limits
    (:func:`~gridflow.study.allocation.allocate_network`); without limits, cheapest first."""

    name = "network"

    def allocate(self, problem: alloc.ShedProblem, **limits) -> alloc.Allocation:
        if not limits:
            import numpy as np

            limits = dict(H=np.zeros((0, problem.nb)), flow0_mw=np.zeros(0), limit_mw=np.zeros(0))
        return alloc.allocate_network(problem, **limits)


POLICIES: dict[str, Policy] = {p.name: p for p in (ProRata(), LargeLoadFirst(), Network())}


def get_policy(name: str) -> Policy:
    """The policy called ``name``; an unknown name is a one-line :class:`ScenarioError`."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ScenarioError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}") from None
