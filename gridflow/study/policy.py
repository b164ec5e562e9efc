"""Load-shed policies: the order of the emergency ladder, behind one interface chosen once by name.

* ``pro-rata`` (PJM Manual 13's order): demand response, voltage reduction,
  emergency import, the datacenters' flexible share, their backup generation,
  then firm load, shared over the footprint's zones by their prior-peak shares.
* ``large-load-first`` (PJM Board, 16 Jan 2026: incremental large load without
  its own generation is curtailed before pre-emergency demand response; Texas SB
  6 for loads of 75 MW and more): *eligible* datacenter sites (buses with at least
  ``large_load_min_mw``) are curtailed first (flexible share, backup generation,
  then the rest of the site), then demand response, voltage reduction, emergency
  import, the flexibility of the sites below the threshold, then firm load.

Both share firm load by the same zone obligations. The study picks a policy
once (:func:`get_policy`) and passes the object on; nothing else reads its name.
The ``network`` policy (a DC linear program over shed sensitivities) was
removed: it could not give a verified answer of its own (README, study section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gridflow.errors import ScenarioError
from gridflow.study.ladder import Rung
from gridflow.study.scenario import NETWORK_REMOVED


@dataclass(frozen=True)
class DatacenterRungs:
    """The rungs one datacenter group can give: flexible, backup and (large-load-first) the rest."""

    eligible: bool
    flexible: Rung
    backup: Rung
    curtail: Rung


class Policy(Protocol):
    """The ladder's order: ``ladder(common, groups) -> [Rung, ...]`` (firm load comes after)."""

    name: str

    def ladder(self, common: list[Rung], groups: list[DatacenterRungs]) -> list[Rung]: ...


class ProRata:
    name = "pro-rata"

    def ladder(self, common, groups):
        return list(common) + [g.flexible for g in groups] + [g.backup for g in groups]


class LargeLoadFirst:
    name = "large-load-first"

    def ladder(self, common, groups):
        first = [r for g in groups if g.eligible for r in (g.flexible, g.backup, g.curtail)]
        rest = [g.flexible for g in groups if not g.eligible] + [g.backup for g in groups if not g.eligible]
        return first + list(common) + rest


POLICIES: dict[str, Policy] = {p.name: p for p in (ProRata(), LargeLoadFirst())}


def get_policy(name: str) -> Policy:
    """The policy called ``name``; an unknown name is a one-line :class:`ScenarioError`."""
    if name == "network":
        raise ScenarioError(NETWORK_REMOVED)
    try:
        return POLICIES[name]
    except KeyError:
        raise ScenarioError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}") from None
