"""Outages: which branches and generators a contingency (or a batch scenario) takes out of service.

An :class:`Outage` names elements by their 0-based row in the case's tables
(``case.branch``, ``case.gen``), the same rows as the result tables. Readers of
contingency lists (MATPOWER change tables, PSS/E ``.con``, CSV) all end in a
list of :class:`Outage`; :func:`check_outages` refuses rows that do not exist.

NERC TPL-001 category P1 ("single contingency") is one outage of one element:
a line, a transformer, a generator or a shunt. ``Outage.branches`` and
``Outage.gens`` may hold several elements (a multi-element contingency, e.g. a
breaker failure, category P2/P4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridflow.errors import CaseError


@dataclass(frozen=True)
class Outage:
    """One contingency.

    Attributes
    ----------
    label : str
        How results name it (the change table's label, the ``.con`` name, or
        ``"branch 17 (101-102)"``).
    branches : tuple of int
        0-based rows of ``case.branch`` taken out of service.
    gens : tuple of int
        0-based rows of ``case.gen`` taken out of service.
    """

    label: str
    branches: tuple[int, ...] = ()
    gens: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "branches", tuple(int(b) for b in self.branches))
        object.__setattr__(self, "gens", tuple(int(g) for g in self.gens))


def check_outages(case, outages, source: str | None = None) -> None:
    """Raise :class:`~gridflow.errors.CaseError` (one line) for an outage naming a row the case lacks."""
    src = source or case.name
    for o in outages:
        for what, rows, n in (("branch", o.branches, case.nl), ("generator", o.gens, case.ng)):
            bad = [r for r in rows if not 0 <= r < n]
            if bad:
                raise CaseError(f"contingency {o.label!r}: {what} row {bad[0]} does not exist "
                                f"(the case has {n} {what} rows, 0..{n - 1})", source=src)
        if not o.branches and not o.gens:
            raise CaseError(f"contingency {o.label!r} takes nothing out of service", source=src)


def branch_label(case, k: int) -> str:
    """``"branch 17 (101-102)"``: a branch row with its case bus numbers."""
    f, t = case.bus.number[case.branch.f[k]], case.bus.number[case.branch.t[k]]
    return f"branch {k} ({int(f)}-{int(t)})"


def gen_label(case, g: int) -> str:
    """``"gen 3 (bus 101)"``."""
    return f"gen {g} (bus {int(case.bus.number[case.gen.bus[g]])})"


def single_branch_outages(case, rows=None) -> list[Outage]:
    """One outage per in-service branch (or per given row): the P1 branch set."""
    rows = np.flatnonzero(case.branch.status) if rows is None else np.asarray(rows, dtype=np.int64)
    return [Outage(branch_label(case, int(k)), branches=(int(k),)) for k in rows]
