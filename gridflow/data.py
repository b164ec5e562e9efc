"""Files gridflow ships beside its code: zone maps and scenarios (``cases/``), CUDA sources (``kernels/``).

In a source checkout they are the top-level folders; an installed wheel carries
them as the packages ``gridflow.cases`` and ``gridflow.kernels``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def data_path(folder: str, *parts: str) -> Path:
    """Path of a shipped file, e.g. ``data_path("cases", "zones", "activsg25k.csv")``."""
    local = _ROOT.joinpath(folder, *parts)
    if local.exists():
        return local
    try:
        res = importlib.resources.files(f"gridflow.{folder}")
    except ModuleNotFoundError:
        return local
    for part in parts:  # one part at a time: a namespace package's MultiplexedPath takes one
        res = res.joinpath(part)
    return Path(str(res))
