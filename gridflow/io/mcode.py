"""The few MATLAB statements MATPOWER's own case files run after their tables, evaluated exactly.

MATPOWER case files are MATLAB functions. Most only assign literal tables
(``mpc.bus = [...]``), but 23 files of MATPOWER's ``data/`` folder (the
distribution feeders: case33bw, case69, case141, ...) give their tables in
kW, kVAr and ohms and convert them with statements after the tables::

    define_constants;
    Vbase = mpc.bus(1, BASE_KV) * 1e3;      %% in Volts
    Sbase = mpc.baseMVA * 1e6;              %% in VA
    mpc.branch(:, [BR_R BR_X]) = mpc.branch(:, [BR_R BR_X]) / (Vbase^2 / Sbase);
    mpc.bus(:, [PD, QD]) = mpc.bus(:, [PD, QD]) / 1e3;

This module evaluates that subset, and nothing else (there is no ``eval`` of
arbitrary code): numbers, ``Inf``, ``pi``, strings; variables; the column
names of ``define_constants`` and of ``[..] = idx_bus`` / ``idx_brch`` /
``idx_gen`` / ``idx_cost`` (MATPOWER's ``lib/idx_*.m``); ``mpc.X`` and
``mpc.X(rows, cols)`` reads with ``:``, ``end``, ranges and index vectors;
``+ - * / ^`` and ``.* ./ .^`` (element-wise, or with a scalar: no matrix
products or divisions); matrix literals ``[a b; c d]``; the element-wise
functions ``sqrt abs exp log log10 sin cos tan asin acos atan``. Statements
are parsed by :class:`Statement` and run by :func:`gridflow.io.matpower.read_matpower`.

Every error is :class:`CodeError` with one line saying what was not
evaluated; the reader turns it into a :class:`~gridflow.errors.CaseError`
naming the file and line.
"""

from __future__ import annotations

import re

import numpy as np

# MATPOWER's lib/idx_*.m: the outputs in the order the functions return them, and their values (1-based)
_IDX_BUS = ("PQ PV REF NONE BUS_I BUS_TYPE PD QD GS BS BUS_AREA VM VA BASE_KV ZONE VMAX VMIN LAM_P LAM_Q MU_VMAX "
            "MU_VMIN").split()
_IDX_BUS_VAL = (1, 2, 3, 4) + tuple(range(1, 18))
_IDX_BRCH = ("F_BUS T_BUS BR_R BR_X BR_B RATE_A RATE_B RATE_C TAP SHIFT BR_STATUS PF QF PT QT MU_SF MU_ST ANGMIN "
             "ANGMAX MU_ANGMIN MU_ANGMAX").split()
_IDX_BRCH_VAL = tuple(range(1, 12)) + (14, 15, 16, 17, 18, 19, 12, 13, 20, 21)
_IDX_GEN = ("GEN_BUS PG QG QMAX QMIN VG MBASE GEN_STATUS PMAX PMIN MU_PMAX MU_PMIN MU_QMAX MU_QMIN PC1 PC2 QC1MIN "
            "QC1MAX QC2MIN QC2MAX RAMP_AGC RAMP_10 RAMP_30 RAMP_Q APF").split()
_IDX_GEN_VAL = tuple(range(1, 11)) + (22, 23, 24, 25) + tuple(range(11, 22))
_IDX_COST = "PW_LINEAR POLYNOMIAL MODEL STARTUP SHUTDOWN NCOST COST".split()
_IDX_COST_VAL = (1, 2, 1, 2, 3, 4, 5)

#: idx function -> its outputs as (name, value), in output order
IDX_FUNCTIONS = {
    "idx_bus": tuple(zip(_IDX_BUS, _IDX_BUS_VAL, strict=True)),
    "idx_brch": tuple(zip(_IDX_BRCH, _IDX_BRCH_VAL, strict=True)),
    "idx_gen": tuple(zip(_IDX_GEN, _IDX_GEN_VAL, strict=True)),
    "idx_cost": tuple(zip(_IDX_COST, _IDX_COST_VAL, strict=True)),
}
#: what ``define_constants`` defines (the column names; MATPOWER's idx_ct names are not among them)
DEFINE_CONSTANTS = {n: float(v) for outs in IDX_FUNCTIONS.values() for n, v in outs}

_FUNCS = {"sqrt": np.sqrt, "abs": np.abs, "exp": np.exp, "log": np.log, "log10": np.log10, "sin": np.sin,
          "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan}
_CONSTS = {"Inf": np.inf, "inf": np.inf, "pi": np.pi}
BLOCK_OPENERS = {"if", "for", "while", "switch", "try", "parfor"}


class CodeError(Exception):
    """A statement outside the evaluated subset, or one that fails (one line)."""


_TOKEN = re.compile(r"""
    (?P<ws>[ \t]+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>\.\*|\./|\.\^|\.\\|==|~=|<=|>=|&&|\|\||[-+*/\\^()\[\]{},;:=<>&|~.'"!@#$`?])
""", re.X)


class _Tok:
    __slots__ = ("kind", "text", "space")

    def __init__(self, kind, text, space):
        self.kind, self.text, self.space = kind, text, space

    def __repr__(self):
        return self.text


def tokenize(text: str) -> list[_Tok]:
    """Tokens of one statement; a quote after a value is MATLAB's transpose (refused), else a string."""
    out: list[_Tok] = []
    i, n, space = 0, len(text), False
    while i < n:
        c = text[i]
        if c == "'" and not (out and (out[-1].kind in ("num", "name", "str") or out[-1].text in (")", "]", "}"))
                             and not space):
            j = i + 1
            buf = []
            while True:
                if j >= n:
                    raise CodeError("a string is never closed")
                if text[j] == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        buf.append("'")
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            out.append(_Tok("str", "".join(buf), space))
            i, space = j + 1, False
            continue
        m = _TOKEN.match(text, i)
        if m is None:
            raise CodeError(f"unexpected character {c!r}")
        kind = m.lastgroup
        if kind == "ws":
            space = True
        else:
            tok = m.group()
            if kind == "op" and tok == "'":
                raise CodeError("the transpose operator (') is not evaluated")
            out.append(_Tok(kind, tok, space))
            space = False
        i = m.end()
    return out


def _is_scalar(v) -> bool:
    return isinstance(v, np.ndarray) and v.size == 1


def _num(v, what="a value") -> np.ndarray:
    if isinstance(v, str):
        raise CodeError(f"{what} is a string, not a number")
    return v


class Parser:
    """Recursive-descent evaluator of one expression over ``env`` (name -> value) and ``tables``.

    Values are 2-D float arrays (MATLAB's matrices; a scalar is 1x1) or str.
    ``tables``: struct field name -> value (``mpc.bus`` -> its matrix); ``struct``: the struct's name.
    """

    def __init__(self, tokens, env, tables, struct):
        self.t, self.k = tokens, 0
        self.env, self.tables, self.struct = env, tables, struct
        self.end_stack: list[int] = []
        self.in_brackets = 0

    # -- token helpers
    def peek(self, off=0):
        j = self.k + off
        return self.t[j] if j < len(self.t) else None

    def at(self, text, off=0):
        p = self.peek(off)
        return p is not None and p.kind == "op" and p.text == text

    def take(self, text=None):
        p = self.peek()
        if p is None or (text is not None and not (p.kind == "op" and p.text == text)):
            want = f"'{text}'" if text else "more"
            raise CodeError(f"expected {want}, found {p.text if p else 'end of statement'!r}")
        self.k += 1
        return p

    def done(self) -> bool:
        return self.k >= len(self.t)

    # -- grammar (MATLAB precedence: range < additive < multiplicative < unary < power < postfix)
    def expression(self):
        a = self.additive()
        if self.at(":") and not self._separator():
            self.take(":")
            b = self.additive()
            step = np.ones((1, 1))
            if self.at(":") and not self._separator():
                self.take(":")
                step, b = b, self.additive()
            a, s, b = (float(_scalar_of(x, "a range bound")) for x in (a, step, b))
            if s == 0 or not all(np.isfinite([a, s, b])) or (b - a) / s > 1e7:
                raise CodeError("a range that is empty, infinite or too long")
            n = int(np.floor((b - a) / s + 1e-10)) + 1
            return (a + s * np.arange(max(n, 0), dtype=float)).reshape(1, -1)
        if self.peek() is not None and self.peek().kind == "op" and self.peek().text in (
                "==", "~=", "<", ">", "<=", ">=", "&", "|", "&&", "||", "~", "\\", ".\\"):
            raise CodeError(f"the operator {self.peek().text!r} is not evaluated")
        return a

    def _separator(self) -> bool:
        """Inside [...], whitespace before an operand starts a new element: [a -b] is two, [a - b] one."""
        if not self.in_brackets:
            return False
        p = self.peek()
        if p is None or not p.space:
            return False
        if p.kind != "op" or p.text in ("(", "[", "'", "~"):
            return True
        if p.text in ("+", "-"):
            nxt = self.peek(1)
            return nxt is not None and not nxt.space
        return False

    def additive(self):
        v = self.multiplicative()
        while (self.at("+") or self.at("-")) and not self._separator():
            op = self.take().text
            w = self.multiplicative()
            v = _binary(v, w, op)
        return v

    def multiplicative(self):
        v = self.unary()
        while any(self.at(o) for o in ("*", "/", ".*", "./")):
            op = self.take().text
            w = self.unary()
            v = _binary(v, w, op)
        return v

    def unary(self):
        if self.at("-") or self.at("+"):
            op = self.take().text
            v = _num(self.unary())
            return -v if op == "-" else v
        return self.power()

    def power(self):
        v = self.postfix()
        while self.at("^") or self.at(".^"):
            op = self.take().text
            if self.at("-") or self.at("+"):  # 2^-1
                sign = -1.0 if self.take().text == "-" else 1.0
                w = sign * _num(self.postfix())
            else:
                w = self.postfix()
            v = _binary(v, w, op)
        return v

    def postfix(self):
        p = self.peek()
        if p is None:
            raise CodeError("an expression ends too early")
        if p.kind == "num":
            self.k += 1
            return np.full((1, 1), float(p.text))
        if p.kind == "str":
            self.k += 1
            return p.text
        if self.at("("):
            self.take("(")
            saved, self.in_brackets = self.in_brackets, 0
            v = self.expression()
            self.in_brackets = saved
            self.take(")")
            return v
        if self.at("["):
            return self.matrix()
        if p.kind != "name":
            raise CodeError(f"unexpected {p.text!r}")
        self.k += 1
        name = p.text
        if name == self.struct and self.at("."):
            self.take(".")
            f = self.peek()
            if f is None or f.kind != "name":
                raise CodeError(f"expected a field name after '{self.struct}.'")
            self.k += 1
            if f.text not in self.tables:
                raise CodeError(f"{self.struct}.{f.text} is not defined here (or is not a table gridflow reads)")
            v = self.tables[f.text]
            if self.at("(") and not self._separator():
                return self.index(v, f"{self.struct}.{f.text}")
            return v
        if name == "end" and self.end_stack:
            return np.full((1, 1), float(self.end_stack[-1]))
        if name in self.env:
            v = self.env[name]
            if self.at("(") and not self._separator():
                return self.index(v, name)
            return v
        if name in _CONSTS:
            return np.full((1, 1), _CONSTS[name])
        if name in _FUNCS:
            self.take("(")
            saved, self.in_brackets = self.in_brackets, 0
            arg = _num(self.expression(), f"the argument of {name}")
            self.in_brackets = saved
            self.take(")")
            with np.errstate(all="ignore"):
                out = _FUNCS[name](arg)
            if np.iscomplexobj(out) or (np.isnan(out) & ~np.isnan(arg)).any():
                raise CodeError(f"{name} of a value outside its real domain")
            return out
        if name in IDX_FUNCTIONS:
            raise CodeError(f"{name} is evaluated only as [NAME, ...] = {name}")
        raise CodeError(f"unknown name {name!r} (not a variable, a define_constants name or an evaluated function)")

    def index(self, v, what):
        v = _num(v, what)
        rows, cols = self.index_args(v.shape, what)
        return v[np.ix_(rows, cols)]

    def index_args(self, shape, what):
        """``(rows, cols)`` after a table name: 0-based positions (``end`` is the dimension's size)."""
        self.take("(")
        saved, self.in_brackets = self.in_brackets, 0
        args = []
        while True:
            dim = shape[len(args)] if len(args) < 2 else 1
            if self.at(":") and (self.at(",", 1) or self.at(")", 1)):
                self.take(":")
                args.append(None)
            else:
                self.end_stack.append(dim)
                args.append(self.expression())
                self.end_stack.pop()
            if self.at(","):
                self.take(",")
                continue
            break
        self.take(")")
        self.in_brackets = saved
        if len(args) != 2:
            raise CodeError(f"{what}(...) with {len(args)} index; only (rows, columns) is evaluated")
        return (index_vector(args[0], shape[0], f"row of {what}"),
                index_vector(args[1], shape[1], f"column of {what}"))

    def matrix(self):
        self.take("[")
        self.in_brackets += 1
        rows: list[list[np.ndarray]] = [[]]
        while not self.at("]"):
            if self.done():
                raise CodeError("a '[' is never closed")
            if self.at(";"):
                self.take(";")
                rows.append([])
                continue
            if self.at(","):
                self.take(",")
                continue
            rows[-1].append(_num(self.expression(), "a matrix element"))
        self.take("]")
        self.in_brackets -= 1
        rows = [r for r in rows if r]
        if not rows:
            return np.zeros((0, 0))
        try:
            return np.vstack([np.hstack(r) for r in rows]).astype(float)
        except ValueError:
            raise CodeError("matrix rows of different lengths") from None


def _scalar_of(v, what) -> float:
    v = _num(v, what)
    if v.size != 1:
        raise CodeError(f"{what} must be a scalar, got a {v.shape[0]}x{v.shape[1]} matrix")
    return float(v.ravel()[0])


def index_vector(v, n: int, what: str) -> np.ndarray:
    """0-based positions for a MATLAB index (None = ':'); refused unless whole numbers in 1..n."""
    if v is None:
        return np.arange(n)
    v = _num(v, what).ravel()
    if v.size and ((v != np.round(v)).any() or v.min() < 1 or v.max() > n):
        bad = v[(v != np.round(v)) | (v < 1) | (v > n)][0]
        raise CodeError(f"{what} index {bad:g} is not a whole number in 1..{n}")
    return v.astype(np.int64) - 1


def _binary(a, b, op):
    a, b = _num(a, "an operand"), _num(b, "an operand")
    if op == "*" and not (_is_scalar(a) or _is_scalar(b)):
        raise CodeError("'*' of two matrices (a matrix product) is not evaluated; use '.*'")
    if op == "/" and not _is_scalar(b):
        raise CodeError("'/' by a matrix (a matrix division) is not evaluated; use './'")
    if op == "^" and not (_is_scalar(a) and _is_scalar(b)):
        raise CodeError("'^' of a matrix (a matrix power) is not evaluated; use '.^'")
    if not (_is_scalar(a) or _is_scalar(b) or a.shape == b.shape):
        raise CodeError(f"sizes {a.shape[0]}x{a.shape[1]} and {b.shape[0]}x{b.shape[1]} do not agree")
    with np.errstate(all="ignore"):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op in ("*", ".*"):
            return a * b
        if op in ("/", "./"):
            return a / b
        out = np.power(a, b)
        if np.isnan(out).any() and not (np.isnan(a).any() or np.isnan(b).any()):
            raise CodeError("a power with a complex result is not evaluated")
        return out


def split_statements(code: str) -> list[str]:
    """Split one logical line (comments and continuations removed) at ';' and ',' outside brackets and strings."""
    out, buf, depth, k, n = [], [], 0, 0, len(code)
    prev_value = False
    while k < n:
        c = code[k]
        if c == "'" and not prev_value:  # a string: copy to its end
            j = k + 1
            while j < n and not (code[j] == "'" and not (j + 1 < n and code[j + 1] == "'")):
                j += 2 if code[j] == "'" else 1
            buf.append(code[k:j + 1])
            k = j + 1
            prev_value = True
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(depth - 1, 0)
        if depth == 0 and c in ";,":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        if not c.isspace():
            prev_value = c.isalnum() or c in "_)]}.'"
        k += 1
    out.append("".join(buf))
    return [s.strip() for s in out if s.strip()]
