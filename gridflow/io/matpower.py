"""Read MATPOWER version-2 case files (``.m``) into a :class:`~gridflow.case.Case`.

The file is run the way MATLAB runs it, statement by statement, but only
what MATPOWER's own case files use is evaluated (no ``eval`` of arbitrary
code): table literals ``mpc.X = [...]`` / ``{...}``, scalar fields, and the
statements some files run after their tables to convert units
(``define_constants``, helper variables, ``mpc.bus(:, [PD QD]) = ...``; see
:mod:`gridflow.io.mcode`). Any other statement is refused with one line
naming the file and line; none is skipped. ``if`` blocks whose condition is
false are not run (as in MATLAB); ``%`` and ``%{ ... %}`` comments, ``...``
continuations, blank lines, tabs, rows ended by ``;`` or by a newline and
several rows on one line are understood.

Fields read: ``version``, ``baseMVA``, ``bus``, ``gen``, ``branch``,
``bus_name`` and ``dcline`` (an in-service DC line is refused: MATPOWER's
``runpf`` models DC lines only after ``toggle_dcline``); assignments to any
other field (``gencost``, ``genfuel``...) are not needed for a power flow.

Numbers in tables may be written as simple arithmetic (``50/3``,
``135/sqrt(3)``, as in case533mt); ``+-Inf`` is accepted only where MATPOWER
means "no limit" (Q and P limits, ratings, voltage limits), NaN nowhere.

Errors are :class:`~gridflow.errors.CaseError` with one line naming the file
and, where there is one, the line: an empty or non-MATPOWER file, a version-1
case, a missing field, a matrix never closed (or not closed before the next
field), a row with a different number of columns, a token that is not a
number, NaN/Inf where not allowed (with the column's name), a bad baseMVA,
a statement not evaluated, duplicate bus numbers, a branch or generator at a
bus that does not exist, a bad bus type or base kV; then
:func:`~gridflow.case.check_case` (no slack bus...).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gridflow.case import (
    Case,
    base_kv_problem,
    check_case,
    make_branches,
    make_buses,
    make_gens,
    warn_setpoint_conflicts,
)
from gridflow.errors import CaseError
from gridflow.io import mcode
from gridflow.io.mcode import CodeError, split_statements

# MATPOWER column numbers (0-based), named once here.
BUS_I, BUS_TYPE, PD, QD, GS, BS, BUS_AREA, VM, VA, BASE_KV, ZONE, VMAX, VMIN = range(13)
GEN_BUS, PG, QG, QMAX, QMIN, VG, MBASE, GEN_STATUS, PMAX, PMIN = range(10)
F_BUS, T_BUS, BR_R, BR_X, BR_B, RATE_A, RATE_B, RATE_C, TAP, SHIFT, BR_STATUS = range(11)

_MIN_COLS = {"bus": 13, "gen": 10, "branch": 11}
_FIELD = re.compile(r"^\s*mpc\.(\w+)\s*=\s*(.*)$")


def read_matpower(path: str | Path) -> Case:
    """Read a MATPOWER version-2 ``.m`` file, running its statements the MATPOWER way.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    Case
        Powers in pu on ``baseMVA``; angles in radians; bus names where the
        file has ``mpc.bus_name``. ``case.meta["statements"]`` counts the
        statements evaluated besides the table literals (0 for most files).

    Raises
    ------
    CaseError
        One line naming the file and line: a malformed table, a statement
        outside the evaluated subset (see :mod:`gridflow.io.mcode`), an
        in-service DC line, an invalid network.
    """
    path = Path(path)
    src = str(path)
    if path.is_dir():
        raise CaseError("is a directory, not a MATPOWER case file", source=src)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise CaseError(f"cannot read file: {e.strerror or e}", source=src) from None
    if not text.strip():
        raise CaseError("empty file", source=src)
    var = _struct_name(text, src)
    if not re.search(rf"^[ \t]*{re.escape(var)}[ \t]*\.[ \t]*\w+", text, re.M):
        raise CaseError(f"not a MATPOWER case: no '{var}.' fields (expected {var}.baseMVA, {var}.bus, ...)",
                        source=src)
    items = _parse_items(text, src, var)
    run = _Run(src, var)
    run.execute(items)
    fields = run.fields
    version = fields.get("version")
    if version is not None and (not isinstance(version[0], str) or version[0].strip("'\" ") != "2"):
        found = f"'{version[0]}'" if isinstance(version[0], str) else "(not a string)"
        raise CaseError(f"only MATPOWER case format version 2 is supported, found version {found}",
                        source=src, line=version[1])
    for name in ("baseMVA", "bus", "gen", "branch"):
        if name not in fields:
            raise CaseError(f"missing mpc.{name}", source=src)
    base_mva, base_line = fields["baseMVA"]
    if not isinstance(base_mva, float):
        raise CaseError(f"mpc.baseMVA is not a number: {base_mva!r}", source=src, line=base_line)
    if not np.isfinite(base_mva) or base_mva <= 0:
        raise CaseError(f"mpc.baseMVA must be a positive number, got {base_mva:g}", source=src, line=base_line)
    bus, gen, branch = (_with_lines(run.tables[n], run.row_lines[n]) for n in ("bus", "gen", "branch"))
    if "dcline" in fields:
        _refuse_dclines(run, src)
    names = fields["bus_name"][0] if "bus_name" in fields else None
    case = _to_case(path.stem, base_mva, bus, gen, branch, names, src, fields)
    case.meta["statements"] = run.evaluated
    return case


def _struct_name(text: str, src: str) -> str:
    """The variable the case function returns (``mpc`` in every MATPOWER file)."""
    for k, line in enumerate(text.splitlines(), 1):
        code = _strip_comment(line).strip()
        if not code:
            continue
        if code.startswith("function"):
            if re.match(r"function\s*\[", code):
                raise CaseError("a MATPOWER version-1 case (function returning [baseMVA, bus, ...]); only "
                                "version 2 (function mpc = ...) is supported", source=src, line=k)
            m = re.match(r"function\s+(\w+)\s*=", code)
            return m.group(1) if m else "mpc"
        break
    return "mpc"


def _scalar(text: str) -> float | None:
    """A number, or arithmetic of numbers and ``sqrt`` (``50/3``, ``135/sqrt(3)`` in case533mt); None otherwise."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.USub: operator.neg, ast.UAdd: operator.pos}
    text = text.strip().rstrip(";").strip()
    try:
        return float(text)
    except ValueError:
        pass

    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value,
                                                                                                       bool):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.operand))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt"
                and len(node.args) == 1 and not node.keywords):
            x = ev(node.args[0])
            if x < 0:
                raise ValueError
            return x ** 0.5
        raise ValueError

    if len(text) > 100:
        return None
    try:
        return float(ev(ast.parse(text, mode="eval").body))
    except (ValueError, SyntaxError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _parse_items(text: str, src: str, var: str = "mpc") -> list:
    """The file as an ordered list of what it runs.

    ``("field", name, rows, line)`` for a table literal ``mpc.X = [...]`` or
    ``{...}`` (rows: list of (line number, row text)); ``("code", statement,
    line)`` for every other statement, comments and ``...`` continuations
    removed, split at ``;`` and ``,`` outside brackets.
    """
    field_re = _FIELD if var == "mpc" else re.compile(rf"^\s*{re.escape(var)}\.(\w+)\s*=\s*(.*)$")
    items: list = []
    lines = text.splitlines()
    i = 0
    n = len(lines)
    while i < n:
        if lines[i].strip() == "%{":  # a block comment, to its own '%}' line
            while i < n and lines[i].strip() != "%}":
                i += 1
            i += 1
            continue
        raw = _strip_comment(lines[i])
        m = field_re.match(raw)
        rest = m.group(2).strip() if m else ""
        if not (m and rest[:1] in ("[", "{")):
            start = i + 1
            part = _strip_code_comment(lines[i]).rstrip()
            depth = _depth(part, 0)
            parts = []
            while part.endswith("...") or depth > 0:  # a statement on several lines
                cont = part.endswith("...")
                parts.append(part[:-3] if cont else part)
                i += 1
                if i >= n:
                    part = ""
                    break
                part = _strip_code_comment(lines[i]).rstrip()
                parts.append(" " if cont or depth == 0 else "; ")
                depth = _depth(part, depth)
            parts.append(part)
            code = "".join(parts)
            try:
                parts = split_statements(code)
            except CodeError as e:
                raise CaseError(f"statement not evaluated: {e}", source=src, line=start) from None
            items.extend(("code", st, start) for st in parts)
            i += 1
            continue
        name = m.group(1)
        start = i + 1
        if rest.startswith("{"):  # a '%' inside a quoted name on this line is text, not a comment
            full = _strip_cell_comment(lines[i])
            rest = full[full.index("{"):]
        close = "]" if rest[0] == "[" else "}"
        rows: list[tuple[int, str]] = []
        body = rest[1:]
        lineno = start
        while True:
            end = body.find(close) if close == "]" else _find_unquoted(body, close)
            if end >= 0:
                rows.append((lineno, body[:end]))
                break
            rows.append((lineno, body))
            i += 1
            if i >= n:
                raise CaseError(f"mpc.{name} opened at line {start} is never closed with '{close}' "
                                "(truncated file?)", source=src, line=n)
            lineno = i + 1
            body = _strip_comment(lines[i]) if close == "]" else _strip_cell_comment(lines[i])
            nxt = field_re.match(body)
            if nxt:
                raise CaseError(f"mpc.{name} opened at line {start} is not closed with '{close}' before "
                                f"mpc.{nxt.group(1)}", source=src, line=lineno)
        items.append(("field", name, rows, start))
        after = body[end + 1:].strip()
        if after.startswith("'"):
            raise CaseError(f"statement not evaluated: a transpose (') of mpc.{name}", source=src, line=lineno)
        after = after.lstrip(";,").strip()
        if after:  # more on the line after the table: run it too
            try:
                items.extend(("code", st, lineno) for st in split_statements(after))
            except CodeError as e:
                raise CaseError(f"statement not evaluated: {e}", source=src, line=lineno) from None
        i += 1
    return items


def _depth(code: str, d: int) -> int:
    """How many '[' and '{' are open after one line of a statement, ``d`` before it (strings skipped)."""
    quoted, prev = False, ""
    for c in code:
        if c == "'" and (quoted or not (prev.isalnum() or prev in "_)]}.'")):
            quoted = not quoted
        elif not quoted:
            if c in "[{":
                d += 1
            elif c in "]}":
                d = max(d - 1, 0)
        if not c.isspace():
            prev = c
    return d


def _strip_code_comment(line: str) -> str:
    """A statement line without its ``%`` comment (a '%' inside a string is text)."""
    quoted, prev = False, ""
    for k, c in enumerate(line):
        if c == "'" and (quoted or not (prev.isalnum() or prev in "_)]}.'")):
            quoted = not quoted
        elif c == "%" and not quoted:
            return line[:k]
        if not c.isspace():
            prev = c
    return line


# the fields gridflow reads; assignments to any other field (gencost, genfuel, areas...) are not used
_READ_FIELDS = ("version", "baseMVA", "bus", "gen", "branch", "bus_name", "dcline")
_TABLES = ("bus", "gen", "branch")
_KEYWORDS_REFUSED = {"else", "elseif", "for", "while", "switch", "case", "otherwise", "try", "catch", "parfor",
                     "break", "continue", "global", "persistent", "eval", "evalin", "load", "run", "clear"}


class _Run:
    """Runs the items of a file in order: table literals, then statements as MATLAB would.

    ``fields``: name -> (value, line) of what the file assigns to the case
    struct (a float for scalars, str for strings, a matrix for tables, a list of
    names for ``bus_name``); ``tables`` and ``row_lines``: bus/gen/branch
    matrices and the file line of each row; ``evaluated``: how many statements
    (other than table literals and the function line) were run.
    """

    def __init__(self, src: str, var: str):
        self.src, self.var = src, var
        self.env: dict = {}
        self.fields: dict = {}
        self.tables: dict = {}
        self.row_lines: dict = {}
        self.evaluated = 0

    def fail(self, why: str, line: int, statement: str | None = None):
        shown = ""
        if statement is not None:
            st = " ".join(statement.split())
            shown = f" '{st[:70]}{'...' if len(st) > 70 else ''}'"
        raise CaseError(f"statement not evaluated:{shown}: {why}", source=self.src, line=line)

    def execute(self, items) -> None:
        skip = 0  # depth inside an 'if' whose condition is false (MATLAB does not run it either)
        open_ifs = 0
        first = True
        for item in items:
            if item[0] == "field":
                if not skip:
                    self.field_literal(*item[1:])
                first = False
                continue
            _, st, line = item
            word = re.match(r"\s*(\w*)", st).group(1)
            bare = re.fullmatch(r"\s*\w+\s*", st) is not None
            if skip:
                if word in mcode.BLOCK_OPENERS:
                    skip += 1
                elif word == "end" and bare:
                    skip -= 1
                continue
            if word == "function":
                if first:
                    first = False
                    continue
                return  # local functions follow; MATLAB runs them only when called
            first = False
            if word in ("end", "endif", "endfunction") and bare:
                if open_ifs:
                    open_ifs -= 1
                    continue
                return  # the end of the case function
            if word == "return" and bare:
                return
            if word == "if":
                cond = self.evaluate(st[st.index("if") + 2:], line, st)
                if isinstance(cond, str):
                    self.fail("an 'if' on a string", line, st)
                self.evaluated += 1
                if cond.size and bool(np.all(cond != 0)):
                    open_ifs += 1
                else:
                    skip = 1
                continue
            if word in _KEYWORDS_REFUSED and (bare or word not in self.env):
                self.fail(f"'{word}' is not evaluated", line, st)
            if word == "define_constants" and bare:
                self.env.update({k: np.full((1, 1), v) for k, v in mcode.DEFINE_CONSTANTS.items()})
                self.evaluated += 1
                continue
            if self.assignment(st, line) != "field":
                self.evaluated += 1
        if skip or open_ifs:
            raise CaseError("an 'if' block is never closed with 'end'", source=self.src)

    # -- table literals
    def field_literal(self, name, rows, line):
        if name in _TABLES:
            m = _matrix((rows, line), name, self.src)
            self.tables[name] = np.asarray(m)
            self.row_lines[name] = list(m.lines)
            self.fields[name] = (self.tables[name], line)
        elif name == "bus_name":
            self.fields[name] = (_cell((rows, line), self.src), line)
        elif name == "dcline":
            self.fields[name] = (rows, line)
        elif name in ("version", "baseMVA"):
            self.fields[name] = ("a matrix", line)
        else:
            self.fields[name] = (None, line)  # a table gridflow does not use (gencost, genfuel, areas...)

    # -- statements
    def parser(self, tokens):
        return mcode.Parser(tokens, self.env, self.tables, self.var)

    def evaluate(self, text, line, st):
        try:
            p = self.parser(mcode.tokenize(text))
            v = p.expression()
            if not p.done():
                raise mcode.CodeError(f"unexpected {p.peek().text!r}")
            return v
        except mcode.CodeError as e:
            self.fail(str(e), line, st)

    def assignment(self, st, line):
        try:
            toks = mcode.tokenize(st)
        except mcode.CodeError as e:
            self.fail(str(e), line, st)
        eq = [k for k, t in enumerate(toks) if t.kind == "op" and t.text == "="]
        if not eq:
            if all(t.kind == "num" or (t.kind == "op" and t.text in "+-.") for t in toks):
                self.fail("numbers outside a matrix (a table's opening line missing or commented out?)", line, st)
            self.fail("not an assignment gridflow evaluates (see the README: what is refused)", line, st)
        lhs, rhs_tokens = toks[:eq[0]], toks[eq[0] + 1:]
        rhs_text = st.split("=", 1)[1]
        kinds = [t.kind for t in lhs]
        texts = [t.text for t in lhs]
        if kinds == ["name"]:
            name = texts[0]
            if name == self.var:
                self.fail(f"an assignment to the whole '{self.var}' struct", line, st)
            if name in mcode.IDX_FUNCTIONS or name in ("define_constants",):
                self.fail(f"redefining {name}", line, st)
            self.env[name] = self._value(rhs_tokens, line, st)
            return
        if texts[:1] == ["["] and texts[-1:] == ["]"]:
            self.multi(lhs, rhs_tokens, line, st)
            return
        if len(lhs) >= 3 and texts[0] == self.var and texts[1] == "." and kinds[2] == "name":
            field = texts[2]
            if len(lhs) == 3:
                self.field_value(field, rhs_tokens, rhs_text, line, st)
                return "field"
            if texts[3] == "(" and texts[-1] == ")":
                self.indexed(field, lhs[3:], rhs_tokens, line, st)
                return
        self.fail("an assignment target gridflow does not evaluate", line, st)

    def _value(self, tokens, line, st):
        try:
            p = self.parser(tokens)
            v = p.expression()
            if not p.done():
                raise mcode.CodeError(f"unexpected {p.peek().text!r}")
            return v
        except mcode.CodeError as e:
            self.fail(str(e), line, st)

    def multi(self, lhs, rhs, line, st):
        names = [t.text for t in lhs[1:-1] if not (t.kind == "op" and t.text == ",")]
        if any(not re.fullmatch(r"[A-Za-z_]\w*", n) for n in names):
            self.fail("a multiple assignment other than [NAME, ...] = idx_bus/idx_brch/idx_gen/idx_cost", line, st)
        fn = [t.text for t in rhs]
        if not (len(fn) in (1, 3) and fn[0] in mcode.IDX_FUNCTIONS and (len(fn) == 1 or fn[1:] == ["(", ")"])):
            self.fail("a multiple assignment other than [NAME, ...] = idx_bus/idx_brch/idx_gen/idx_cost", line, st)
        outs = mcode.IDX_FUNCTIONS[fn[0]]
        if len(names) > len(outs):
            self.fail(f"{fn[0]} returns {len(outs)} values, {len(names)} asked for", line, st)
        for n, (_, v) in zip(names, outs, strict=False):
            self.env[n] = np.full((1, 1), float(v))

    def field_value(self, field, rhs, rhs_text, line, st):
        if field not in _READ_FIELDS:
            try:  # a field gridflow does not use: kept if it evaluates, never needed
                self.fields[field] = (self._value(rhs, line, st), line)
                self.tables[field] = self.fields[field][0]
            except CaseError:
                self.fields[field] = (None, line)
            return
        if field in ("baseMVA", "version"):
            try:
                v = self._value(rhs, line, st)
            except CaseError:
                v = rhs_text.strip().rstrip(";").strip()
                if field == "version":
                    raise
            if not isinstance(v, str):
                if v.size == 1:
                    self.tables[field] = v
                v = float(v.ravel()[0]) if v.size == 1 else "a matrix"
            self.fields[field] = (v, line)
            return
        v = self._value(rhs, line, st)
        if field in _TABLES:
            if isinstance(v, str) or v.ndim != 2 or v.shape[1] < _MIN_COLS[field] or v.shape[0] == 0:
                if not isinstance(v, str) and v.size == 0 and field == "bus":
                    raise CaseError("mpc.bus is empty", source=self.src, line=line)
                if not isinstance(v, str) and v.size == 0:
                    v = np.zeros((0, _MIN_COLS[field]))
                else:
                    raise CaseError(f"mpc.{field} is not a matrix", source=self.src, line=line)
            self._check_finite(field, v, np.arange(v.shape[0]), np.arange(v.shape[1]), line, st)
            self.tables[field] = np.array(v, dtype=float)
            self.row_lines[field] = [line] * v.shape[0]
            self.fields[field] = (self.tables[field], line)
            return
        self.fail(f"mpc.{field} must be written as a literal", line, st)

    def indexed(self, field, index_tokens, rhs, line, st):
        if field not in _READ_FIELDS:
            self.fields.setdefault(field, (None, line))  # a change to a table gridflow does not use
            return
        if field not in self.tables:
            self.fail(f"mpc.{field} is changed before it is defined" if field in _TABLES
                      else f"mpc.{field} is changed by index (only bus, gen and branch are evaluated)", line, st)
        table = self.tables[field]
        try:
            p = self.parser(index_tokens)
            rows, cols = p.index_args(table.shape, f"mpc.{field}")
            if not p.done():
                raise mcode.CodeError(f"unexpected {p.peek().text!r}")
        except mcode.CodeError as e:
            self.fail(str(e), line, st)
        v = self._value(rhs, line, st)
        if isinstance(v, str):
            self.fail(f"a string assigned into mpc.{field}", line, st)
        if v.size == 0:
            self.fail(f"deleting rows or columns of mpc.{field} is not evaluated", line, st)
        shape = (len(rows), len(cols))
        if v.size == 1:
            v = np.full(shape, float(v.ravel()[0]))
        elif v.shape != shape:
            if min(shape) == 1 and min(v.shape) == 1 and v.size == shape[0] * shape[1]:
                v = v.reshape(shape)  # MATLAB puts a vector into a vector region of the same length
            else:
                self.fail(f"a {v.shape[0]}x{v.shape[1]} value assigned into a {shape[0]}x{shape[1]} part of "
                          f"mpc.{field}", line, st)
        self._check_finite(field, v, rows, cols, line, st)
        new = table.copy()
        new[np.ix_(rows, cols)] = v
        self.tables[field] = new
        self.fields[field] = (new, self.fields[field][1])

    def _check_finite(self, field, v, rows, cols, line, st):
        need = _MIN_COLS[field]
        for j, c in enumerate(cols):
            if c >= need:
                continue
            col = v[:, j]
            bad = np.isnan(col) | (np.isinf(col) & (c not in _INF_OK[field]))
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise CaseError(f"mpc.{field}: column {_colname(field, c)} of row {int(rows[k]) + 1} is "
                                f"{col[k]:g} after this statement, it must be a finite number", source=self.src,
                                line=line)


def _refuse_dclines(run: _Run, src: str) -> None:
    """An in-service DC line (``mpc.dcline``, status column 3) is refused: MATPOWER's runpf models DC lines
    only after ``toggle_dcline(mpc, 'on')``, which gridflow does not reproduce."""
    rows, _ = run.fields["dcline"]
    for lineno, body in rows:
        for part in body.split(";"):
            toks = part.replace(",", " ").split()
            if not toks:
                continue
            status = _scalar(toks[2]) if len(toks) > 2 else None
            if status is None or status != 0:
                frm, to = toks[0], toks[1] if len(toks) > 1 else "?"
                raise CaseError(f"mpc.dcline: DC line {frm}-{to} is in service; DC lines are not modelled for "
                                ".m files (MATPOWER's runpf ignores them unless toggle_dcline is on): set its "
                                "status (column 3) to 0 to solve without it", source=src, line=lineno)


def _strip_comment(line: str) -> str:
    k = line.find("%")
    return line if k < 0 else line[:k]


def _find_unquoted(text: str, ch: str) -> int:
    """Index of the first ``ch`` outside single-quoted strings, or -1."""
    quoted = False
    for k, c in enumerate(text):
        if c == "'":
            quoted = not quoted
        elif c == ch and not quoted:
            return k
    return -1


def _strip_cell_comment(line: str) -> str:
    # a '%' inside a quoted name is text, not a comment
    out, quoted = [], False
    for ch in line:
        if ch == "'":
            quoted = not quoted
        elif ch == "%" and not quoted:
            break
        out.append(ch)
    return "".join(out)


def _matrix(field, name: str, src: str) -> np.ndarray:
    rows_in, start = field
    if not isinstance(rows_in, list):
        raise CaseError(f"mpc.{name} is not a matrix", source=src, line=start)
    rows: list[list[str]] = []
    row_lines: list[int] = []
    pending: list[str] = []
    pending_line = None
    for lineno, body in rows_in:
        cont = "..." in body
        if cont:
            body = body[: body.find("...")]
        parts = body.replace(",", " ").split(";")
        for j, part in enumerate(parts):
            toks = part.split()
            if toks:
                if pending_line is None:
                    pending_line = lineno
                pending.extend(toks)
            row_ends = j < len(parts) - 1 or not cont
            if row_ends and pending:
                rows.append(pending)
                row_lines.append(pending_line)
                pending, pending_line = [], None
    if pending:
        rows.append(pending)
        row_lines.append(pending_line)
    need = _MIN_COLS[name]
    if not rows:
        if name == "bus":
            raise CaseError("mpc.bus is empty", source=src, line=start)
        return _with_lines(np.zeros((0, need)), [])
    # the width most rows have is the intended one; name the first row that differs
    widths = [len(r) for r in rows]
    width = max(set(widths), key=lambda w: (widths.count(w), -widths.index(w)))
    for r, ln in zip(rows, row_lines, strict=True):
        if len(r) != width:
            raise CaseError(f"mpc.{name} row has {len(r)} columns, expected {width} like the other rows",
                            source=src, line=ln)
    if width < need:
        raise CaseError(f"mpc.{name} has {width} columns, a version-2 case needs at least {need}",
                        source=src, line=row_lines[0])
    flat = [t for r in rows for t in r]
    try:
        data = np.array(flat, dtype=np.float64)
    except ValueError:  # an expression (135/sqrt(3)) or a typo: go token by token
        values = []
        for r, ln in zip(rows, row_lines, strict=True):
            for c, t in enumerate(r):
                v = _scalar(t)
                if v is None:
                    raise CaseError(f"mpc.{name}: {t!r} in column {_colname(name, c)} is not a number",
                                    source=src, line=ln) from None
                values.append(v)
        data = np.array(values, dtype=np.float64)
    data = data.reshape(len(rows), width)
    used = data[:, :need]
    bad = np.isnan(used)
    inf_ok = _INF_OK[name]
    bad |= np.isinf(used) & ~np.isin(np.arange(need), inf_ok)
    if bad.any():
        k, c = (int(v[0]) for v in np.nonzero(bad))
        raise CaseError(f"mpc.{name}: column {_colname(name, c)} is {used[k, c]:g}, it must be a finite number",
                        source=src, line=row_lines[k])
    return _with_lines(data, row_lines)


_COLNAMES = {
    "bus": "BUS_I BUS_TYPE PD QD GS BS BUS_AREA VM VA BASE_KV ZONE VMAX VMIN".split(),
    "gen": "GEN_BUS PG QG QMAX QMIN VG MBASE GEN_STATUS PMAX PMIN".split(),
    "branch": "F_BUS T_BUS BR_R BR_X BR_B RATE_A RATE_B RATE_C TAP SHIFT BR_STATUS".split(),
}
# columns where MATPOWER cases use +-Inf for "no limit"
_INF_OK = {"bus": [VMAX, VMIN], "gen": [QMAX, QMIN, MBASE, PMAX, PMIN], "branch": [RATE_A, RATE_B, RATE_C]}


def _colname(name: str, c: int) -> str:
    """'3 (PD)': a 0-based column as MATPOWER's 1-based number and its name."""
    names = _COLNAMES.get(name, [])
    return f"{c + 1} ({names[c]})" if c < len(names) else str(c + 1)


class _Rows(np.ndarray):
    """A float matrix that remembers each row's line in the file (for errors)."""

    lines: list[int]


def _with_lines(data: np.ndarray, lines: list[int]) -> np.ndarray:
    out = data.view(_Rows)
    out.lines = lines
    return out


def _cell(field, src: str) -> np.ndarray:
    rows_in, start = field
    if not isinstance(rows_in, list):
        raise CaseError("mpc.bus_name is not a cell array", source=src, line=start)
    names = []
    for _lineno, body in rows_in:
        names.extend(m.group(1).replace("''", "'") for m in re.finditer(r"'((?:[^']|'')*)'", body))
    return np.array(names, dtype=object)


def _to_case(name, base_mva, bus, gen, branch, names, src, fields) -> Case:
    nb = bus.shape[0]
    number = bus[:, BUS_I]
    if (number != np.round(number)).any():
        k = int(np.flatnonzero(number != np.round(number))[0])
        raise CaseError(f"bus number {number[k]} is not an integer", source=src, line=bus.lines[k])
    number = number.astype(np.int64)
    uniq, first, counts = np.unique(number, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        k = int(np.flatnonzero(number == dup)[1])
        raise CaseError(f"duplicate bus number {dup}", source=src, line=bus.lines[k])
    lookup = dict(zip(number.tolist(), range(nb), strict=False))

    def index(col, mat, what):
        out = np.empty(mat.shape[0], dtype=np.int64)
        for k, v in enumerate(mat[:, col].tolist()):
            j = lookup.get(int(v)) if v == int(v) else None
            if j is None:
                raise CaseError(f"{what} {k + 1} refers to unknown bus {v:g}", source=src, line=mat.lines[k])
            out[k] = j
        return out

    gbus = index(GEN_BUS, gen, "generator")
    fbus = index(F_BUS, branch, "branch")
    tbus = index(T_BUS, branch, "branch")
    if names is None or len(names) != nb:
        if names is not None:
            raise CaseError(f"mpc.bus_name has {len(names)} names for {nb} buses", source=src,
                            line=fields["bus_name"][1])
        names = np.array([""] * nb, dtype=object)
    base_kv = bus[:, BASE_KV]
    k, why = base_kv_problem(base_kv)
    if k is not None:
        raise CaseError(f"bus {number[k]}: {why}", source=src, line=bus.lines[k])
    bt = bus[:, BUS_TYPE]
    bad = ~np.isin(bt, (1, 2, 3, 4))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise CaseError(f"bus {number[k]}: bus type {bt[k]:g} is not 1 (PQ), 2 (PV), 3 (ref) or 4 (isolated)",
                        source=src, line=bus.lines[k])
    s = 1.0 / base_mva
    tap = branch[:, TAP].copy()
    tap[tap == 0] = 1.0
    case = Case(
        name=name,
        base_mva=base_mva,
        bus=make_buses(
            number=number, type=bt, pd=bus[:, PD] * s, qd=bus[:, QD] * s, gs=bus[:, GS] * s, bs=bus[:, BS] * s,
            area=bus[:, BUS_AREA], zone=bus[:, ZONE], vm=bus[:, VM], va=np.deg2rad(bus[:, VA]),
            base_kv=base_kv, vmax=bus[:, VMAX], vmin=bus[:, VMIN], name=names,
        ),
        gen=make_gens(
            bus=gbus, pg=gen[:, PG] * s, qg=gen[:, QG] * s, qmax=gen[:, QMAX] * s, qmin=gen[:, QMIN] * s,
            vg=gen[:, VG], status=gen[:, GEN_STATUS] > 0, pmax=gen[:, PMAX] * s, pmin=gen[:, PMIN] * s,
        ),
        branch=make_branches(
            f=fbus, t=tbus, r=branch[:, BR_R], x=branch[:, BR_X], b=branch[:, BR_B],
            rate_a=branch[:, RATE_A] * s, rate_b=branch[:, RATE_B] * s, rate_c=branch[:, RATE_C] * s,
            tap=tap, shift=np.deg2rad(branch[:, SHIFT]), status=branch[:, BR_STATUS] > 0,
        ),
        meta={"source": src, "format": "matpower"},
    )
    g = case.gen
    bad = g.status & (g.qmin > g.qmax)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise CaseError(f"generator {k + 1} at bus {int(number[gbus[k]])}: QMIN {gen[k, QMIN]:g} is above QMAX "
                        f"{gen[k, QMAX]:g}", source=src, line=gen.lines[k])
    check_case(case, src)
    warn_setpoint_conflicts(case, src)
    return case
