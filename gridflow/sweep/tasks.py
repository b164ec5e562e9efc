"""The grid of a sweep, grouped into tasks.

A *point* is one row of the result: (bus, MW, hour, contingency), the contingency "base" (N-0) or one of the
study's set. A *task* is one (bus, hour) with all its MW levels and all contingencies: one call of
:func:`gridflow.study.hosting.evaluate_points`, i.e. one warm-started climb in MW at one bus whose contingencies
are solved as batches on one model. Tasks are independent; their order does not change any result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One (bus, hour): ``bus`` (bus number), ``hour`` (clock hour), ``interval`` (index into the Setup's day),
    ``mw`` (MW levels, increasing), ``n_contingencies`` (the study's set; 0 for N-0 only)."""

    bus: int
    hour: int
    interval: int
    mw: tuple[float, ...]
    n_contingencies: int

    @property
    def id(self) -> str:
        """Stable name of the task within its sweep (the partition file is ``task-<id>.parquet``)."""
        return f"b{self.bus}-h{self.hour:02d}"

    @property
    def n_points(self) -> int:
        """Rows the task returns: every MW level, N-0 and each contingency."""
        return len(self.mw) * (1 + self.n_contingencies)


def make_tasks(buses, hours, intervals, mw, n_contingencies: int) -> list[Task]:
    """Every (bus, hour) of the grid, bus-major in the given orders. ``intervals[j]`` is the Setup interval of
    ``hours[j]``."""
    mws = tuple(sorted(float(m) for m in mw))
    return [Task(int(b), int(h), int(t), mws, int(n_contingencies)) for b in buses for h, t in zip(hours, intervals,
                                                                                                   strict=True)]


def partition_name(task: Task) -> str:
    return f"task-{task.id}.parquet"
