"""Participation factors of a distributed slack: who picks up the slack power, in what proportion.

With ``distributed_slack=True`` the power flow has one more unknown, the slack
power ``s`` (pu), and generator g produces ``Pg + s * w_g / sum(w)`` (the sum
over the in-service generators in the reference bus's island). The choices:

* ``None`` (default): a pandapower net's own ``slack_weight`` of its generators
  and external grids when any is set (what ``runpp(distributed_slack=True)``
  uses), otherwise ``"pmax"``;
* ``"pmax"``: each online generator's Pmax (a common planning convention:
  response in proportion to size);
* ``"headroom"``: Pmax − Pg, the room each unit has left (nobody at Pmax moves);
* an array (ng,) of non-negative factors, one per generator row.

Generators pushed past Pmax or below Pmin are held at the limit and their
share goes to the others (:class:`gridflow.model.PowerFlowModel`).
"""

from __future__ import annotations

import numpy as np

from gridflow.case import Case
from gridflow.errors import GridflowError

CHOICES = ("pmax", "headroom")


def participation_factors(case: Case, participation=None) -> np.ndarray:
    """Participation factors (ng,), float64, >= 0, zero for out-of-service generators (not normalized).

    Raises
    ------
    GridflowError
        An unknown name, an array of the wrong length or with negative or non-finite values, or
        factors that are zero for every in-service generator.
    """
    gen = case.gen
    on = gen.status
    if participation is None:
        participation = "slack_weight" if np.any(gen.slack_weight[on] != 0) else "pmax"
    if isinstance(participation, str):
        if participation == "slack_weight":
            w = gen.slack_weight.astype(float)
        elif participation == "pmax":
            w = np.where(np.isfinite(gen.pmax), gen.pmax, 0.0)
        elif participation == "headroom":
            w = np.where(np.isfinite(gen.pmax), gen.pmax - gen.pg, 0.0)
        else:
            raise GridflowError(f"unknown participation {participation!r}; choose from {', '.join(CHOICES)} "
                                "or give one factor per generator")
        w = np.maximum(w, 0.0)
    else:
        w = np.asarray(participation, dtype=float).reshape(-1)
        if w.shape != (case.ng,):
            raise GridflowError(f"participation must have one factor per generator ({case.ng}), got {w.shape[0]}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise GridflowError("participation factors must be finite and >= 0")
    w = np.where(on, w, 0.0)
    if not (w > 0).any():
        raise GridflowError("distributed slack: the participation factors are zero for every in-service generator")
    return w
