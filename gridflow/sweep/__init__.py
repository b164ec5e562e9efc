"""Sweeps: a grid of datacenter what-ifs (candidate bus x MW x hour x contingency) run on Dask.

One idea per module: :mod:`.spec` (the TOML spec), :mod:`.tasks` (the grid in tasks), :mod:`.worker` (one task,
its Setup cached per process), :mod:`.run` (the sweep: local cluster, a scheduler or in-process; partitions,
resume, progress), :mod:`.summary` (per-bus limits, summary.csv and summary.png).

The package is callable: ``gridflow.sweep(spec, ...)`` is :func:`gridflow.sweep.run.sweep`.
"""

from __future__ import annotations

import sys
import types


class _SweepModule(types.ModuleType):
    """This package, callable as :func:`gridflow.sweep.run.sweep`."""

    def __call__(self, spec, client=None, **kwargs):
        from gridflow.sweep.run import sweep

        return sweep(spec, client, **kwargs)


sys.modules[__name__].__class__ = _SweepModule
