"""Write results to files: CSV, JSON or Parquet, chosen by the file name's extension."""

from __future__ import annotations

import json
import math
from pathlib import Path

from gridflow.errors import GridflowError
from gridflow.results import PowerFlowResult


def write_result(res: PowerFlowResult, out: str | Path) -> list[Path]:
    """Write the bus, branch and gen tables and the summary.

    ``name.csv`` / ``name.parquet`` -> ``name_bus.csv``, ``name_branch.csv``,
    ``name_gen.csv`` (or .parquet) and ``name_summary.json``;
    ``name.json`` -> one JSON file with ``summary``, ``bus``, ``branch``, ``gen``
    (records). Returns the files written.
    """
    out = Path(out)
    ext = out.suffix.lower()
    tables = {"bus": res.bus, "branch": res.branch, "gen": res.gen}
    summary = _plain(res.summary())
    try:
        if ext == ".json":
            # Python floats keep every digit (pandas' to_json rounds to 10); NaN -> null
            doc = {"summary": summary} | {k: _plain(t.reset_index().to_dict(orient="records"))
                                          for k, t in tables.items()}
            out.write_text(json.dumps(doc, indent=1, allow_nan=False))
            return [out]
        if ext not in (".csv", ".parquet"):
            raise GridflowError(f"{out}: use a .csv, .json or .parquet file name")
        written = []
        for k, t in tables.items():
            p = out.with_name(f"{out.stem}_{k}{ext}")
            if ext == ".csv":
                t.to_csv(p)
            else:
                try:
                    t.to_parquet(p)
                except ImportError:
                    raise GridflowError("writing Parquet needs pyarrow (pip install pyarrow)") from None
            written.append(p)
        p = out.with_name(f"{out.stem}_summary.json")
        p.write_text(json.dumps(summary, indent=1, allow_nan=False))
        return written + [p]
    except OSError as e:
        raise GridflowError(f"cannot write {out}: {e.strerror}") from None


def _plain(obj):
    """JSON-safe copy: NumPy scalars as Python numbers, NaN and Inf as null (strict JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
