"""Record the call signatures of the CuPy API the GPU path may use, for the stand-in.

Run with a real CuPy (no GPU needed: the Python-level API imports without one)::

    python tests/cupy_standin/record_signatures.py > tests/cupy_standin/cupy_signatures.json

Sources, per name: ``inspect.signature`` (Python functions); the first docstring line of
Cython-compiled functions and methods, which CuPy builds with ``embedsignature`` (C types kept,
e.g. ``tuple options``: Cython refuses another type there); the abstract syntax tree of the
``cupyx`` sources (``cupyx.scipy.sparse.linalg`` needs the CUDA math libraries to import).
``RawModule`` is recorded by hand: its class docstring shows ``code`` as positional, its
``__init__`` in ``cupy/_core/raw.pyx`` takes every argument by keyword (``def __init__(self, *,
str code=None, ...)``).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from pathlib import Path

EMPTY = None
KINDS = {inspect.Parameter.POSITIONAL_ONLY: "POSITIONAL_ONLY",
         inspect.Parameter.POSITIONAL_OR_KEYWORD: "POSITIONAL_OR_KEYWORD",
         inspect.Parameter.VAR_POSITIONAL: "VAR_POSITIONAL", inspect.Parameter.KEYWORD_ONLY: "KEYWORD_ONLY",
         inspect.Parameter.VAR_KEYWORD: "VAR_KEYWORD"}
CTYPES = {"str", "tuple", "list", "dict", "int", "bint", "bool", "Py_ssize_t", "size_t", "intptr_t", "double",
          "float", "object", "_ndarray_base", "ndarray"}

NDARRAY_METHODS = [
    "all", "any", "argmax", "argmin", "astype", "conj", "conjugate", "copy", "cumsum", "dot", "fill", "flatten",
    "get", "item", "max", "mean", "min", "nonzero", "prod", "ravel", "repeat", "reshape", "set", "squeeze", "sum",
    "swapaxes", "take", "tolist", "transpose", "view", "clip", "round", "sort", "argsort", "__array__",
]
RUNTIME = ["getDeviceCount", "getDevice", "memGetInfo", "getDeviceProperties", "deviceSynchronize", "setDevice",
           "runtimeGetVersion", "driverGetVersion"]
CUDA = ["Device", "Device.synchronize", "Device.use", "Event", "Event.record", "Event.synchronize",
        "get_elapsed_time", "Stream", "Stream.synchronize"]
CUPYX_FILES = {
    "cupyx.scatter_add": ("cupyx/_scatter.py", "scatter_add"),
    "cupyx.scipy.sparse.issparse": ("cupyx/scipy/sparse/_base.py", "issparse"),
    "cupyx.scipy.sparse.csr_matrix": ("cupyx/scipy/sparse/_compressed.py", "_compressed_sparse_matrix.__init__"),
    "cupyx.scipy.sparse.csr_matrix.sum_duplicates": ("cupyx/scipy/sparse/_compressed.py",
                                                     "_compressed_sparse_matrix.sum_duplicates"),
    "cupyx.scipy.sparse.csr_matrix.get": ("cupyx/scipy/sparse/_csr.py", "_csr_base.get"),
    "cupyx.scipy.sparse.csr_matrix.tocsr": ("cupyx/scipy/sparse/_csr.py", "_csr_base.tocsr"),
    "cupyx.scipy.sparse.csr_matrix.dot": ("cupyx/scipy/sparse/_base.py", "_spbase.dot"),
    "cupyx.scipy.sparse.linalg.spsolve_triangular": ("cupyx/scipy/sparse/linalg/_solve.py", "spsolve_triangular"),
    "cupyx.scipy.sparse.linalg.spsolve": ("cupyx/scipy/sparse/linalg/_solve.py", "spsolve"),
    "cupyx.scipy.sparse.linalg.splu": ("cupyx/scipy/sparse/linalg/_solve.py", "splu"),
    "cupyx.scipy.sparse.linalg.gmres": ("cupyx/scipy/sparse/linalg/_iterative.py", "gmres"),
    "cupyx.scipy.sparse.linalg.LinearOperator": ("cupyx/scipy/sparse/linalg/_interface.py",
                                                 "LinearOperator.__init__"),
}
MANUAL = {
    "cupy.RawModule": [["code", "KEYWORD_ONLY", "None", "str"], ["path", "KEYWORD_ONLY", "None", "str"],
                       ["options", "KEYWORD_ONLY", "()", "tuple"], ["backend", "KEYWORD_ONLY", "'nvrtc'", "str"],
                       ["translate_cucomplex", "KEYWORD_ONLY", "False", "bool"],
                       ["enable_cooperative_groups", "KEYWORD_ONLY", "False", "bool"],
                       ["name_expressions", "KEYWORD_ONLY", "None", None], ["jitify", "KEYWORD_ONLY", "None", None]],
    # cupy/cuda/function.pyx (no docstring): what RawKernel.__call__ hands its arguments to
    "cupy.cuda.Function.__call__": [["grid", "POSITIONAL_OR_KEYWORD", None, "tuple"],
                                    ["block", "POSITIONAL_OR_KEYWORD", None, "tuple"],
                                    ["args", "POSITIONAL_OR_KEYWORD", None, None],
                                    ["shared_mem", "POSITIONAL_OR_KEYWORD", "0", "size_t"],
                                    ["stream", "POSITIONAL_OR_KEYWORD", "None", None],
                                    ["enable_cooperative_groups", "POSITIONAL_OR_KEYWORD", "False", None]],
}


def from_inspect(obj):
    sig = inspect.signature(obj)
    out = []
    for p in sig.parameters.values():
        if p.name == "self":  # methods are recorded as called on an instance
            continue
        default = None if p.default is inspect.Parameter.empty else repr(p.default)
        out.append([p.name, KINDS[p.kind], default, None])
    return out


def from_doc(obj):
    """Parse a Cython embedsignature line, e.g. ``_ndarray_base.max(self, axis=None, out=None, keepdims=False)``."""
    doc = (obj.__doc__ or "").strip().splitlines()
    if not doc:
        raise ValueError("no docstring")
    m = re.match(r"^[\w.]+\((.*)\)(\s*->.*)?$", doc[0].strip())
    if not m:
        raise ValueError(f"no signature line: {doc[0]!r}")
    # multi-output ufuncs write NumPy's optional groups: "x[, out1, out2], / [, out=(None, None)]"
    text = m.group(1).replace("\\*", "*").replace("[,", ",[")
    out, kind, depth = [], "POSITIONAL_OR_KEYWORD", 0
    for raw in _split(text):
        optional = depth > 0 or "[" in raw
        depth += raw.count("[") - raw.count("]")
        raw = raw.replace("[", "").replace("]", "").strip()
        if not raw or raw == "self":
            continue
        if raw == "/":
            for p in out:
                p[1] = "POSITIONAL_ONLY"
            continue
        if raw == "*":
            kind = "KEYWORD_ONLY"
            continue
        if raw.startswith("**"):
            out.append([raw[2:], "VAR_KEYWORD", None, None])
            continue
        if raw.startswith("*"):
            out.append([raw[1:], "VAR_POSITIONAL", None, None])
            kind = "KEYWORD_ONLY"
            continue
        name, _, default = raw.partition("=")
        parts = name.split()
        ctype = " ".join(parts[:-1]) or None
        if ctype is not None and ctype not in CTYPES:
            ctype = None
        default = default.strip() or ("None" if optional else None)
        out.append([parts[-1], kind, default, ctype])
    return out


def _split(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def from_ast(root: Path, rel: str, qual: str):
    tree = ast.parse((root / rel).read_text())
    node = tree
    for part in qual.split("."):
        node = next(n for n in ast.iter_child_nodes(node)
                    if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part)
    a = node.args
    out = []
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + [ast.unparse(d) for d in a.defaults]
    for i, (arg, d) in enumerate(zip(pos, defaults, strict=True)):
        kind = "POSITIONAL_ONLY" if i < len(a.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        if arg.arg != "self":
            out.append([arg.arg, kind, d, None])
    if a.vararg:
        out.append([a.vararg.arg, "VAR_POSITIONAL", None, None])
    for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out.append([arg.arg, "KEYWORD_ONLY", None if d is None else ast.unparse(d), None])
    if a.kwarg:
        out.append([a.kwarg.arg, "VAR_KEYWORD", None, None])
    return out


def record(name, obj, sigs):
    for how, fn in (("inspect", from_inspect), ("doc", from_doc)):
        try:
            params = fn(obj)
        except (ValueError, TypeError):
            continue
        if how == "inspect" and [p[0] for p in params] in (["args", "kwargs"], ["self", "args", "kwargs"]):
            continue  # a slot wrapper: try the docstring
        sigs[name] = {"source": how, "params": params}
        return


def main():
    # this folder holds the stand-in's own ``cupy``: record the real one
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import cupy

    sigs = {}
    for name in sorted(dir(cupy)):
        if name.startswith("_"):
            continue
        obj = getattr(cupy, name)
        if callable(obj) and not isinstance(obj, type) or name in ("ndarray",):
            record(f"cupy.{name}", obj, sigs)
    for m in NDARRAY_METHODS:
        record(f"cupy.ndarray.{m}", getattr(cupy.ndarray, m), sigs)
    record("cupy.RawModule.get_function", cupy.RawModule.get_function, sigs)
    record("cupy.RawKernel.__call__", cupy.RawKernel.__call__, sigs)
    for n in RUNTIME:
        record(f"cupy.cuda.runtime.{n}", getattr(cupy.cuda.runtime, n), sigs)
    for n in CUDA:
        obj = cupy.cuda
        for part in n.split("."):
            obj = getattr(obj, part)
        record(f"cupy.cuda.{n}", obj, sigs)
    root = Path(cupy.__file__).resolve().parents[1]
    for name, (rel, qual) in CUPYX_FILES.items():
        sigs[name] = {"source": "ast", "params": from_ast(root, rel, qual)}
    for name, params in MANUAL.items():
        sigs[name] = {"source": "manual", "params": params}
    # one signature a line, so that a new CuPy's changes read as a diff
    lines = [f"{json.dumps(k)}: {json.dumps(sigs[k], sort_keys=True)}" for k in sorted(sigs)]
    sys.stdout.write(f'{{"cupy_version": {json.dumps(cupy.__version__)}, "signatures": {{\n' + ",\n".join(lines)
                     + "\n}}\n")


if __name__ == "__main__":
    main()
