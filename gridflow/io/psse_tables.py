"""What a PSS/E case says that the reader library's network model drops.

pypowsybl converts a ``.raw``/``.rawx`` file into its IIDM network model, which
has no zones or owners and keeps loads' constant-current and
constant-admittance parts only inside a ZIP load model its Python API does not
show. So gridflow reads these few tables from the file itself:

* bus records: number, AREA, ZONE, OWNER;
* load records: IP, IQ, YP, YQ (the voltage-dependent parts, refused by the
  reader: gridflow models constant-power loads only);
* area, zone and owner records: number and name.

Record layouts are those of the PSS/E 33/34/35 manuals (Program Operation
Manual, "Power Flow Raw Data File Contents"): the bus record is
``I, 'NAME', BASKV, IDE, AREA, ZONE, OWNER, ...`` in every version; the load
record ``I, ID, STATUS, AREA, ZONE, PL, QL, IP, IQ, YP, YQ, OWNER, ...``;
area ``I, ISW, PDES, PTOL, 'ARNAME'``; zone ``I, 'ZONAME'``; owner
``I, 'OWNAME'``. Sections end with a record ``0`` (or ``Q`` for the file);
version 34 and later put system-wide data before the buses.
RAWX (JSON) tables are read by their field names.

Everything else in the file is the library's business: this is a lookup of a
few columns, not a second RAW reader.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gridflow.errors import CaseError

# Section order after the buses (PSS/E 33; 34 and later add system switching devices after branches).
_SECTIONS_33 = ("bus", "load", "fixed_shunt", "generator", "branch", "transformer", "area", "two_terminal_dc",
                "vsc_dc", "impedance_correction", "multi_terminal_dc", "multi_section_line", "zone",
                "inter_area_transfer", "owner", "facts", "switched_shunt", "gne", "induction_machine")
_SECTIONS_34 = ("bus", "load", "fixed_shunt", "generator", "branch", "system_switching_device", "transformer",
                "area", "two_terminal_dc", "vsc_dc", "impedance_correction", "multi_terminal_dc",
                "multi_section_line", "zone", "inter_area_transfer", "owner", "facts", "switched_shunt", "gne",
                "induction_machine", "substation")
_WANTED = ("bus", "load", "area", "zone", "owner")
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|[^,\s]+")


@dataclass
class PsseTables:
    """Per-bus area/zone/owner numbers, their names, and loads with voltage-dependent parts."""

    bus_area: dict[int, int] = field(default_factory=dict)
    bus_zone: dict[int, int] = field(default_factory=dict)
    bus_owner: dict[int, int] = field(default_factory=dict)
    area_names: dict[int, str] = field(default_factory=dict)
    zone_names: dict[int, str] = field(default_factory=dict)
    owner_names: dict[int, str] = field(default_factory=dict)
    # (bus, load id, IP, IQ, YP, YQ, line) for in-service loads with a voltage-dependent part
    zip_loads: list[tuple] = field(default_factory=list)
    version: int | None = None


def read_psse_tables(path: str | Path) -> PsseTables:
    """The bus, load, area, zone and owner tables of a ``.raw`` or ``.rawx`` file (see module doc)."""
    path = Path(path)
    if path.suffix.lower() == ".rawx":
        return _read_rawx(path)
    return _read_raw(path)


def _strip(line: str) -> str:
    """A record without its trailing ``/ comment`` (a '/' inside quotes is text)."""
    quoted = None
    for k, ch in enumerate(line):
        if ch in "'\"":
            quoted = None if quoted == ch else (ch if quoted is None else quoted)
        elif ch == "/" and quoted is None:
            return line[:k]
    return line


def _tokens(line: str) -> list[str]:
    return [t[1:-1].strip() if t[0] in "'\"" else t for t in _TOKEN.findall(_strip(line))]


def _int(tok: str) -> int:
    return int(float(tok))


def _read_raw(path: Path) -> PsseTables:
    src = str(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise CaseError(f"cannot read file: {e.strerror or e}", source=src) from None
    out = PsseTables()
    head = _tokens(lines[0]) if lines else []
    try:
        out.version = _int(head[2]) if len(head) > 2 else 33
    except ValueError:
        out.version = 33
    k = 3
    if out.version >= 34:  # system-wide data up to its "0 / END OF SYSTEM-WIDE DATA"
        while k < len(lines) and not _is_end(lines[k]):
            k += 1
        k += 1
    order = _SECTIONS_34 if out.version >= 34 else _SECTIONS_33
    sec = 0
    while k < len(lines) and sec < len(order):
        line = lines[k]
        k += 1
        if line.startswith("@!") or not _strip(line).strip():
            continue
        if line.strip().upper().startswith("Q"):
            break
        if _is_end(line):
            sec += 1
            if all(s not in _WANTED for s in order[sec:]):
                break
            continue
        name = order[sec]
        if name not in _WANTED:
            continue
        t = _tokens(line)
        try:
            _record(out, name, t, src, k)
        except (ValueError, IndexError):
            raise CaseError(f"PSS/E {name} record not understood: {line.strip()[:60]!r}", source=src,
                            line=k) from None
    return out


def _is_end(line: str) -> bool:
    return _tokens(line) == ["0"]


def _record(out: PsseTables, name: str, t: list[str], src: str, lineno: int) -> None:
    if name == "bus":
        b = _int(t[0])
        out.bus_area[b], out.bus_zone[b], out.bus_owner[b] = _int(t[4]), _int(t[5]), _int(t[6])
    elif name == "load":
        if _int(t[2]) != 0:
            ip, iq, yp, yq = (float(x) for x in t[7:11])
            if ip or iq or yp or yq:
                out.zip_loads.append((_int(t[0]), t[1], ip, iq, yp, yq, lineno))
    elif name == "area":
        out.area_names[_int(t[0])] = t[4] if len(t) > 4 else ""
    elif name == "zone":
        out.zone_names[_int(t[0])] = t[1] if len(t) > 1 else ""
    elif name == "owner":
        out.owner_names[_int(t[0])] = t[1] if len(t) > 1 else ""


def _read_rawx(path: Path) -> PsseTables:
    src = str(path)
    try:
        doc = json.loads(path.read_text(errors="replace"))
        net = doc["network"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CaseError(f"not a readable RAWX (JSON) file ({type(e).__name__}: {e})", source=src) from None
    out = PsseTables(version=35)

    def table(name):
        tab = net.get(name) or {}
        fields = [f.lower() for f in tab.get("fields", [])]
        return [dict(zip(fields, row, strict=False)) for row in tab.get("data", [])]

    for r in table("bus"):
        b = int(r["ibus"])
        out.bus_area[b], out.bus_zone[b], out.bus_owner[b] = (int(r.get(c) or 1) for c in ("area", "zone", "owner"))
    for r in table("load"):
        if int(r.get("stat", 1) or 0) != 0:
            ip, iq, yp, yq = (float(r.get(c) or 0.0) for c in ("ip", "iq", "yp", "yq"))
            if ip or iq or yp or yq:
                out.zip_loads.append((int(r["ibus"]), str(r.get("loadid", "")).strip(), ip, iq, yp, yq, None))
    for tab, key, nm, dest in (("area", "iarea", "arname", out.area_names), ("zone", "izone", "zoname", out.zone_names),
                               ("owner", "iowner", "owname", out.owner_names)):
        for r in table(tab):
            dest[int(r[key])] = str(r.get(nm, "")).strip()
    return out
