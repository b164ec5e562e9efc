"""Map every area of the ACTIVSg synthetic grids to US state(s), a zone name and an RTO.

Usage (from the repository root, with gridflow installed)::

    python cases/zones/make_zones.py case_ACTIVSg25k            # rewrites activsg25k.csv, activsg25k_shares.csv
                                                                # (and its README table)
    python cases/zones/make_zones.py --all                      # the three cases below
    python cases/zones/make_zones.py case_ACTIVSg25k --report   # also prints the vote of every area
    python cases/zones/make_zones.py --markdown case_ACTIVSg25k # the table for the README
    python cases/zones/make_zones.py --build-cities             # rebuilds us_cities.csv (needs `zipcodes`)

Method
------
The ACTIVSg cases (Texas A&M, ARPA-E GRID DATA) name every bus after the US
place it sits in, with counters appended: ``'MANASSAS 2'``, ``'SPARTANBURG 1 4'``,
``'ODESSA 2 0'``. Nothing else in the case says which state a bus is in, so:

1. **Place name.** Strip the trailing counters (``' 1'``, ``' 2 0'``) and
   normalise (upper case, every run of non-alphanumerics to one space).
2. **Candidates.** ``us_cities.csv`` lists, for every place name used in the
   three cases, every state with a US postal city of that name, and where it is
   (median latitude/longitude of its ZIP codes). About two thirds of the load
   sits at names that exist in several states (WASHINGTON, SPRINGFIELD,
   CHARLESTON, PORTLAND...), so a name alone does not give the state.
3. **Resolution by network neighbours.** Buses of one name in one area that
   are joined by branches (a substation, mostly) form a group, placed together.
   The synthetic grid was laid out on real geography, so a group is near its
   network neighbours. A name of one state is placed there; an ambiguous one
   starts at the candidate nearest to the median position of the area's
   unambiguous buses. Then, in rounds until nothing changes, every group takes
   its candidate nearest to the median position of its neighbours within 1
   (else 2, else 3) branches, other than buses of its own name. A group whose
   place is still more than ``FAR_KM`` from its neighbours is dropped, the
   farthest first, and the rounds run again (this catches misspellings that
   match a place elsewhere: ARCHER, BIG SPRINGS in Texas). Names not found or
   dropped (LEWSIVILLE, CONNELLYS SPRINGS...: 0.28 % of the 2000-bus case's
   load, 0.01 % of the 25k's) stay unplaced and do not vote.
4. **Vote.** Each area's state shares are the area's bus loads (MW, negative
   loads counted as 0) summed per resolved state. ``state`` is the largest
   share; ``states`` lists every state holding at least ``MIN_SHARE`` of the
   area's placed load, largest first (the README table gives the shares).
5. **Zone name and RTO.** The readable zone name is curated below (``ZONES``),
   from the area's main cities that ``--report`` prints; each entry also states
   the main state it expects, and the script stops if the vote disagrees, so a
   name can never be attached to the wrong area silently. The RTO follows from
   the main state per interconnection (``RTO``); see the README for where that
   is only approximate.

6. **Prior-peak shares.** ``<map>_shares.csv`` gives each zone's share of its
   RTO's load in the base case (``load_mw`` over the RTO's total, datacenters
   excluded: the case has none). The ACTIVSg base cases are peak-hour cases
   (ACTIVSg2000's is within 1.3 % of its 2016 annual peak), so this is each
   zone's share of the historical peak: the table a balancing authority splits
   a firm load shed by (PJM Manual 13's manual load dump; ERCOT's load-shed
   table; Texas PURA §38.076: "based on historical seasonal peak demand").
   The rolling-blackout study uses it by default.

Everything is deterministic: the same case and ``us_cities.csv`` give the same
CSV, byte for byte (``tests/test_zones.py`` checks the committed files).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CITIES_CSV = HERE / "us_cities.csv"
README = HERE / "README.md"
OUTPUTS = {
    "case_ACTIVSg25k": "activsg25k.csv",
    "case_ACTIVSg2000": "activsg2000.csv",
    "case_ACTIVSg10k": "activsg10k.csv",
}
COLUMNS = ["area", "zone", "state", "rto", "states", "load_mw", "buses"]
SHARE_COLUMNS = ["zone", "rto", "load_mw", "share"]
MIN_SHARE = 0.01  # a state is listed in `states` from 1 % of the area's placed load
MAX_HOPS = 3
MAX_ROUNDS = 20
FAR_KM = 300.0  # a place this far from the bus's network neighbours is not believed

STATES = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
    "OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY"
).split()

# ---------------------------------------------------------------------------------------------------------------
# Curated: area -> (zone name, main state the vote must give). Names from the main cities of each area
# (`--report`); ERCOT areas are ERCOT's eight weather zones, which the 2000-bus case's areas follow.
ZONES = {
    "case_ACTIVSg25k": {
        11: ("Upstate South Carolina", "SC"),          # Greenville, Spartanburg, Rock Hill, Anderson
        13: ("New Jersey", "NJ"),                      # Newark, Jersey City, Trenton, Camden, Atlantic City
        15: ("Richmond, Hampton Roads & Central Virginia", "VA"),  # Virginia Beach, Richmond, Norfolk, Roanoke
        17: ("Maine", "ME"),                           # Portland, Bangor, Lewiston, Augusta
        19: ("Midlands South Carolina", "SC"),         # Columbia, Lexington, Aiken
        21: ("Baltimore & Washington DC", "MD"),       # Baltimore, Washington, Silver Spring, Hagerstown
        23: ("Connecticut", "CT"),                     # Bridgeport, Hartford, New Haven, Stamford
        25: ("Piedmont North Carolina", "NC"),         # Charlotte, Greensboro, Winston-Salem
        27: ("North Country New York", "NY"),          # Watertown, Plattsburgh, Oswego, Massena
        29: ("Central Pennsylvania", "PA"),            # York, Harrisburg, Lancaster, Altoona, State College
        31: ("Coastal South Carolina", "SC"),          # Charleston, Myrtle Beach, Florence
        33: ("Western North Carolina", "NC"),          # Asheville, Gastonia, Hickory
        35: ("New Hampshire", "NH"),                   # Manchester, Nashua, Concord
        37: ("Long Island", "NY"),                     # Huntington Station, Brentwood, Hempstead
        39: ("Eastern North Carolina", "NC"),          # Raleigh, Durham, Fayetteville, Wilmington
        41: ("Bronx, Hudson Valley & Capital District", "NY"),  # Bronx, New York, Yonkers, Schenectady, Albany
        43: ("Western Pennsylvania", "PA"),            # Pittsburgh, Erie, Greensburg
        45: ("West Virginia, Eastern Kentucky & Southern Ohio", "WV"),  # Charleston, Huntington; Ashland KY
        47: ("Vermont", "VT"),                         # Burlington, Rutland, Brattleboro
        49: ("Delmarva & Northeast Maryland", "DE"),   # Wilmington, Newark, Dover; Salisbury, Bel Air MD
        51: ("Southwest Virginia", "VA"),              # Blacksburg, Christiansburg, Bristol, Abingdon
        53: ("Northeast Ohio", "OH"),                  # Cleveland, Akron, Youngstown
        55: ("East Tennessee", "TN"),                  # Knoxville, Chattanooga, Johnson City
        57: ("Eastern Massachusetts", "MA"),           # Boston, Cambridge, Lowell, New Bedford
        59: ("Central & Eastern Ohio", "OH"),          # Columbus, Canton, Mansfield
        61: ("Philadelphia & Eastern Pennsylvania", "PA"),  # Philadelphia, Reading, Allentown, Scranton
        63: ("Northern Virginia", "VA"),               # Alexandria, Arlington, Woodbridge, Fairfax, Manassas
        65: ("Central & Western Massachusetts", "MA"),  # Worcester, Springfield, Pittsfield
        67: ("Western & Central New York", "NY"),      # Buffalo, Rochester, Syracuse
        69: ("New York City", "NY"),                   # Brooklyn, New York (Manhattan), Staten Island, Queens
        71: ("Rhode Island", "RI"),                    # Providence, Warwick, Cranston
    },
    "case_ACTIVSg2000": {
        1: ("Far West", "TX"),        # Odessa, Midland
        2: ("North", "TX"),           # Wichita Falls, Sherman
        3: ("West", "TX"),            # Abilene, San Angelo
        4: ("South", "TX"),           # Corpus Christi, Laredo, Brownsville
        5: ("North Central", "TX"),   # Dallas, Fort Worth
        6: ("South Central", "TX"),   # San Antonio, Austin
        7: ("Coast", "TX"),           # Houston
        8: ("East", "TX"),            # Tyler, College Station
    },
    "case_ACTIVSg10k": {
        1: ("Washington", "WA"),                       # Seattle, Tacoma, Spokane
        2: ("Oregon", "OR"),                           # Portland, Salem, Eugene
        3: ("Northern California", "CA"),              # Sacramento, Redding, Chico
        4: ("San Francisco Bay Area", "CA"),           # San Jose, San Francisco, Oakland
        5: ("Central California", "CA"),               # Fresno, Stockton, Modesto, Salinas
        6: ("Los Angeles", "CA"),                      # Los Angeles, Long Beach, Bakersfield
        7: ("San Diego, Orange & Inland Empire", "CA"),  # San Diego, Riverside, Santa Ana, Anaheim
        8: ("Nevada", "NV"),                           # Las Vegas, Reno, Henderson
        9: ("Arizona", "AZ"),                          # Phoenix, Tucson, Mesa
        10: ("Utah", "UT"),                            # Salt Lake City, Ogden, Provo
        11: ("New Mexico", "NM"),                      # Albuquerque, Las Cruces, Santa Fe
        12: ("Colorado", "CO"),                        # Denver, Colorado Springs, Aurora
        13: ("Wyoming", "WY"),                         # Cheyenne, Casper, Gillette
        14: ("Idaho", "ID"),                           # Boise, Idaho Falls, Nampa
        15: ("Montana", "MT"),                         # Billings, Missoula, Great Falls
        16: ("El Paso", "TX"),                         # El Paso (in WECC, not ERCOT)
    },
}

# Main state -> RTO, per case (interconnection). "Southeast": no RTO (vertically integrated utilities, TVA);
# "West": no RTO in WECC outside California.
_NE = dict.fromkeys(["CT", "MA", "ME", "NH", "RI", "VT"], "ISO-NE")
_PJM = dict.fromkeys(["NJ", "PA", "MD", "DE", "DC", "VA", "WV", "OH"], "PJM")
_SE = dict.fromkeys(["NC", "SC", "TN", "GA"], "Southeast")
RTO = {
    "case_ACTIVSg25k": {"NY": "NYISO", **_NE, **_PJM, **_SE},
    "case_ACTIVSg2000": {"TX": "ERCOT"},
    "case_ACTIVSg10k": {"CA": "CAISO", **dict.fromkeys(
        ["WA", "OR", "NV", "AZ", "UT", "NM", "CO", "WY", "ID", "MT", "TX"], "West")},
}


# ---------------------------------------------------------------------------------------------------------------
def normalize(name: str) -> str:
    """Upper case, every run of characters other than A-Z and 0-9 to one space."""
    return " ".join(re.sub(r"[^A-Z0-9]+", " ", str(name).upper()).split())


def place_name(bus_name: str) -> str:
    """'SPARTANBURG 1 4' -> 'SPARTANBURG': the place, without the bus counters."""
    return normalize(re.sub(r"(\s+\d+)+\s*$", "", str(bus_name).strip()))


def key(name: str) -> str:
    """The lookup key of a normalised place name: without spaces ('LAPORTE' finds 'LA PORTE')."""
    return name.replace(" ", "")


def read_cities(path: Path = CITIES_CSV) -> dict[str, list[tuple[str, float, float]]]:
    """key -> [(state, lat, lon), ...] from us_cities.csv (lines starting with '#' are comments)."""
    with open(path, newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        table = defaultdict(list)
        for r in rows:
            table[key(r["name"])].append((r["state"], float(r["lat"]), float(r["lon"])))
    return dict(table)


def _haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(a))


def _adjacency(case):
    import scipy.sparse as sp

    nb = len(case.bus)
    f, t = np.asarray(case.branch.f), np.asarray(case.branch.t)
    a = sp.coo_matrix((np.ones(2 * len(f)), (np.r_[f, t], np.r_[t, f])), shape=(nb, nb)).tocsr()
    a.data[:] = 1.0
    return a


def place_buses(case, cities):
    """Resolve every bus to (state, lat, lon); state '' and lat/lon NaN where it cannot be placed.

    Buses of one place name in one area that are joined by branches (a
    substation, mostly) form a group and are placed together. Returns (state,
    lat, lon, dist_km, rounds): dist_km is the distance from the bus's place to
    the median position of its group's neighbours (NaN for buses not placed);
    rounds, how many neighbour rounds it took to settle.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    nb = len(case.bus)
    names = np.array([place_name(n) for n in case.bus.name], dtype=object)
    keys_ = np.array([key(n) for n in names], dtype=object)
    area = np.asarray(case.bus.area)
    found = np.array([k in cities for k in keys_])
    # groups: buses of one known place name in one area joined by branches
    adj = _adjacency(case)
    f, t = adj.nonzero()
    same = found[f] & (keys_[f] == keys_[t]) & (area[f] == area[t])
    link = sp.coo_matrix((np.ones(same.sum()), (f[same], t[same])), shape=(nb, nb))
    _, comp = connected_components(link, directed=False)
    by_comp = defaultdict(list)
    for i in np.flatnonzero(found):
        by_comp[comp[i]].append(i)
    members = sorted((np.array(b, dtype=np.int64) for b in by_comp.values()), key=lambda b: b[0])
    gkey = [keys_[b[0]] for b in members]
    cand = [(np.array([c[1] for c in cities[k]]), np.array([c[2] for c in cities[k]])) for k in gkey]
    ng = len(members)

    lat = np.full(nb, np.nan)
    lon = np.full(nb, np.nan)
    choice = np.zeros(ng, dtype=np.int64)
    gdist = np.zeros(ng)
    dropped = np.zeros(ng, dtype=bool)

    def nearest(g, alat, alon):
        d = _haversine_km(alat, alon, *cand[g])
        k = int(np.argmin(d))
        return k, float(d[k])

    def apply():
        for g in range(ng):
            b = members[g]
            if dropped[g]:
                lat[b], lon[b] = np.nan, np.nan
            else:
                _, lat[b], lon[b] = cities[gkey[g]][choice[g]]

    # start: names of one state where they are; ambiguous ones at the candidate nearest to the median position
    # of the area's unambiguous buses
    single = np.array([len(c[0]) == 1 for c in cand], dtype=bool)
    unique = np.zeros(nb, dtype=bool)
    for g in np.flatnonzero(single):
        unique[members[g]] = True
    apply()
    for g in np.flatnonzero(~single):
        m = unique & (area == area[members[g][0]])
        m = m if m.any() else unique
        choice[g] = nearest(g, np.median(lat[m]), np.median(lon[m]))[0]
    apply()

    # neighbours of each group within 1, 2 and 3 branches, other than buses of its own name
    eye = sp.identity(nb, format="csr")
    reach = [adj]
    for _ in range(MAX_HOPS - 1):
        reach.append(((reach[-1] @ (eye + adj)) > 0).astype(np.float64).tocsr())
    near = []
    for g in range(ng):
        levels = []
        for r in reach:
            nbrs = np.unique(np.concatenate([r.indices[r.indptr[i]:r.indptr[i + 1]] for i in members[g]]))
            levels.append(nbrs[keys_[nbrs] != gkey[g]])
        near.append(levels)

    # rounds until nothing changes: each group takes its candidate nearest to the median position of its
    # nearest placed neighbours (Jacobi-style: a round only uses the positions from before it). Groups whose
    # place is then still more than FAR_KM from their neighbours are dropped one by one, the farthest first
    # (misspelt or unlisted names that happen to match a place elsewhere), the rounds running again each time.
    rounds = 0
    while True:
        for _ in range(MAX_ROUNDS):
            rounds += 1
            new, dist = choice.copy(), np.full(ng, np.nan)
            for g in np.flatnonzero(~dropped):
                for lv in near[g]:
                    lv = lv[~np.isnan(lat[lv])]
                    if len(lv):
                        new[g], dist[g] = nearest(g, np.median(lat[lv]), np.median(lon[lv]))
                        break
            changed = bool((new != choice).any())
            choice, gdist = new, dist
            apply()
            if not changed:
                break
        far = np.where(~dropped & (gdist > FAR_KM), gdist, -1.0)
        if not ng or far.max() < 0:
            break
        dropped[int(np.argmax(far))] = True  # the worst first: it may be what pulls its neighbours away
        apply()

    state = np.array([""] * nb, dtype=object)
    dist = np.full(nb, np.nan)
    for g in np.flatnonzero(~dropped):
        state[members[g]] = cities[gkey[g]][choice[g]][0]
        dist[members[g]] = gdist[g]
    return state, lat, lon, dist, rounds


def derive(case_name: str, cities=None, case=None):
    """The rows of the zone table and, per area, the details of the vote."""
    import gridflow

    case = case if case is not None else gridflow.load_case(case_name)
    cities = cities if cities is not None else read_cities()
    zones, rto_of = ZONES.get(case_name, {}), RTO.get(case_name, {})
    state, _, _, dist, _ = place_buses(case, cities)
    mw = np.asarray(case.bus.pd) * case.base_mva
    w = np.maximum(mw, 0.0)
    area = np.asarray(case.bus.area)
    names = np.array([place_name(n) for n in case.bus.name], dtype=object)
    rows, details = [], {}
    for a in sorted(set(area.tolist())):
        m = area == a
        votes = defaultdict(float)
        for s, x in zip(state[m], w[m], strict=True):
            if s:
                votes[s] += x
        placed = sum(votes.values())
        if placed <= 0:
            raise SystemExit(f"{case_name} area {a}: no load at a known place")
        shares = sorted(((s, v / placed) for s, v in votes.items()), key=lambda t: (-t[1], t[0]))
        main = shares[0][0]
        listed = [s for s, sh in shares if sh >= MIN_SHARE]
        cities_mw = defaultdict(float)
        for n, s, x in zip(names[m], state[m], w[m], strict=True):
            cities_mw[(n, s)] += x
        top = sorted(cities_mw.items(), key=lambda t: (-t[1], t[0]))
        far = sorted({(n, s, round(d)) for n, s, d in zip(names[m], state[m], dist[m], strict=True) if d > 150},
                     key=lambda t: -t[2])
        if a in zones:
            zone, expect = zones[a]
            if expect != main:
                raise SystemExit(f"{case_name} area {a}: the vote gives {main} ({shares[:3]}), "
                                 f"but ZONES names it {zone!r} for {expect}")
        else:
            zone = " / ".join(n.title() for (n, _), _ in top[:2]) + f" ({main})"
        if main not in rto_of:
            raise SystemExit(f"{case_name} area {a}: no RTO for main state {main}; add it to RTO")
        rows.append({
            "area": int(a), "zone": zone, "state": main, "rto": rto_of[main], "states": ";".join(listed),
            "load_mw": f"{mw[m].sum():.2f}", "buses": int(m.sum()),
        })
        minor = [(n, s, x) for (n, s), x in top if s and s != main and x > 0]
        details[int(a)] = {
            "shares": shares, "top": top[:6], "minor": minor, "far": far,
            "unplaced": [(n, x) for (n, s), x in top if not s],
        }
    return rows, details


def render_csv(rows) -> str:
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    wr.writeheader()
    wr.writerows(rows)
    return buf.getvalue()


def shares_path(case_name: str) -> Path:
    return HERE / OUTPUTS[case_name].replace(".csv", "_shares.csv")


def render_shares(rows) -> str:
    """The prior-peak share table: each zone's base-case load over its RTO's (a pure function of the rows,
    so it can be checked against the committed zone table without reading the case)."""
    load = defaultdict(float)
    for r in rows:
        load[(r["zone"], r["rto"])] += float(r["load_mw"])
    rto_total = defaultdict(float)
    for (_, rto), mw in load.items():
        rto_total[rto] += mw
    buf = io.StringIO()
    buf.write("# prior-peak shares: each zone's base-case load over its RTO's (make_zones.py)\n")
    wr = csv.DictWriter(buf, fieldnames=SHARE_COLUMNS, lineterminator="\n")
    wr.writeheader()
    for (zone, rto), mw in sorted(load.items(), key=lambda t: (t[0][1], t[0][0])):
        wr.writerow({"zone": zone, "rto": rto, "load_mw": f"{mw:.2f}",
                     "share": f"{mw / rto_total[rto]:.6f}" if rto_total[rto] > 0 else "0"})
    return buf.getvalue()


def render_markdown(rows, details) -> str:
    out = ["| area | zone | state(s), share of load | RTO | load MW | buses | main cities (MW) |",
           "| ---: | --- | --- | --- | ---: | ---: | --- |"]
    for r in rows:
        d = details[r["area"]]
        shares = ", ".join(f"{s} {sh:.1%}" for s, sh in d["shares"] if sh >= MIN_SHARE / 10)
        top = ", ".join(f"{n.title()} {s} {x:.0f}" for (n, s), x in d["top"][:4])
        out.append(f"| {r['area']} | {r['zone']} | {shares} | {r['rto']} | {float(r['load_mw']):,.0f} "
                   f"| {r['buses']:,} | {top} |")
    return "\n".join(out) + "\n"


def readme_with_table(text: str, case_name: str, table: str) -> str:
    """`text` with the table between '<!-- zones:CASE -->' and '<!-- /zones -->' replaced by `table`."""
    start, end = f"<!-- zones:{case_name} -->\n", "<!-- /zones -->"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i < 0 or j < 0:
        return text
    return text[:i + len(start)] + table + text[j:]


def report(case_name, rows, details) -> str:
    out = []
    for r in rows:
        d = details[r["area"]]
        out.append(f"area {r['area']:>3}  {r['zone']:<38} {r['state']} {r['rto']:<9} {r['load_mw']:>10} MW "
                   f"{r['buses']:>5} buses")
        out.append("    shares: " + ", ".join(f"{s} {sh:.2%}" for s, sh in d["shares"]))
        out.append("    top:    " + ", ".join(f"{n} {s} {x:.0f}" for (n, s), x in d["top"]))
        if d["minor"]:
            out.append("    outside the main state: " + ", ".join(f"{n} {s} {x:.0f}" for n, s, x in d["minor"][:12]))
        if d["unplaced"]:
            out.append("    not placed: " + ", ".join(f"{n} {x:.1f}" for n, x in d["unplaced"]))
        if d["far"]:
            out.append("    >150 km from neighbours: " + ", ".join(f"{n} {s} {k} km" for n, s, k in d["far"][:8]))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------
def build_cities(case_names, path: Path = CITIES_CSV) -> int:
    """Rewrite us_cities.csv from the `zipcodes` package for the place names used in `case_names`.

    Candidates of a name: every state (50 + DC) where it is the postal city of a
    standard or PO-box ZIP code, or an accepted alternative city name of a
    standard ZIP code. Position: median latitude/longitude of those ZIP codes
    (those at 0,0, i.e. without a position, left out).
    """
    import zipcodes

    import gridflow

    wanted = set()
    for c in case_names:
        wanted.update(key(place_name(n)) for n in gridflow.load_case(c).bus.name)
    ok = set(STATES)
    pos = defaultdict(lambda: ([], []))  # (name, state) -> (primary positions, alias positions)
    for z in zipcodes.list_all():
        if z["state"] not in ok or z["zip_code_type"] not in ("STANDARD", "PO BOX"):
            continue
        la, lo = float(z["lat"] or 0), float(z["long"] or 0)
        if la == 0 and lo == 0:
            continue
        n = normalize(z["city"])
        if key(n) in wanted:
            pos[(n, z["state"])][0].append((la, lo))
        if z["zip_code_type"] == "STANDARD":
            for alt in z.get("acceptable_cities") or []:
                n = normalize(alt)
                if key(n) in wanted:
                    pos[(n, z["state"])][1].append((la, lo))
    lines = [
        "# Place names used as bus names in the ACTIVSg cases (case_ACTIVSg25k, case_ACTIVSg2000, case_ACTIVSg10k),",
        "# each with every US state (50 + DC) that has a postal city of that name, at the median position of its",
        "# ZIP codes. Generated by `python cases/zones/make_zones.py --build-cities` from the PyPI package",
        f"# zipcodes {zipcodes.__version__} (MIT; its data from unitedstateszipcodes.org, GeoNames (CC BY 4.0) and the",
        "# USPS ZIP Locale Detail). Do not edit by hand.",
        "name,state,lat,lon",
    ]
    n_rows = 0
    for (n, s) in sorted(pos):
        prim, alias = pos[(n, s)]
        pts = np.array(prim or alias)
        lines.append(f"{n},{s},{np.median(pts[:, 0]):.3f},{np.median(pts[:, 1]):.3f}")
        n_rows += 1
    path.write_text("\n".join(lines) + "\n")
    return n_rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="*", help=f"case names ({', '.join(OUTPUTS)})")
    p.add_argument("--all", action="store_true", help="all three cases")
    p.add_argument("--report", action="store_true", help="print each area's vote")
    p.add_argument("--markdown", action="store_true", help="print the README table instead of writing the CSV")
    p.add_argument("--build-cities", action="store_true", help="rebuild us_cities.csv (needs `pip install zipcodes`)")
    args = p.parse_args(argv)
    if args.build_cities:
        n = build_cities(list(OUTPUTS))
        print(f"wrote {CITIES_CSV} ({n} rows)")
    names = list(OUTPUTS) if args.all else args.cases
    unknown = [c for c in names if c not in OUTPUTS]
    if unknown:
        p.error(f"unknown case(s) {unknown}; known: {list(OUTPUTS)}")
    if not names and not args.build_cities:
        p.error("name a case, or --all")
    cities = read_cities()
    for c in names:
        rows, details = derive(c, cities)
        if args.markdown:
            sys.stdout.write(render_markdown(rows, details))
            continue
        out = HERE / OUTPUTS[c]
        out.write_text(render_csv(rows))
        shares_path(c).write_text(render_shares(rows))
        print(f"wrote {out} ({len(rows)} areas) and {shares_path(c).name}")
        if README.is_file():  # keep the README's table of this case in step
            text = README.read_text()
            new = readme_with_table(text, c, render_markdown(rows, details))
            if new != text:
                README.write_text(new)
                print(f"updated the {c} table in {README}")
        if args.report:
            sys.stdout.write(report(c, rows, details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
