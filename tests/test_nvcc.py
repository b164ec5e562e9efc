"""The CUDA kernels (kernels/*.cu) compile, without a GPU.

* nvcc, for sm_80 (A100) and sm_90 (H100/H200), warnings as errors, into cubins
  that hold every ``gridflow_*`` kernel the source declares;
* NVRTC, the compiler CuPy uses at run time, when a libnvrtc is found (pip
  ``nvidia-cuda-nvrtc`` or a CUDA toolkit's lib64); skipped otherwise;
* every kernel name the GPU backend launches is declared in some source.

Not GPU-marked: these run wherever nvcc is installed (skipped with a message elsewhere).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = ROOT / "kernels"
SOURCES = sorted(KERNEL_DIR.glob("*.cu"))
ARCHS = ("sm_80", "sm_90")
KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(gridflow_\w+)\s*\(')


def _cuda_homes():
    return [h for h in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda") if h]


def _nvcc():
    found = shutil.which("nvcc")
    if found:
        return found
    for home in _cuda_homes():
        p = Path(home) / "bin" / "nvcc"
        if p.is_file():
            return str(p)
    return None


def _kernels_in(path: Path) -> list[str]:
    return KERNEL_RE.findall(path.read_text())


def test_kernel_sources_exist():
    assert SOURCES, f"no .cu files in {KERNEL_DIR}"
    for src in SOURCES:
        assert _kernels_in(src), f'{src.name} declares no extern "C" __global__ gridflow_* kernel'


def test_backend_launches_only_declared_kernels():
    declared = {k for src in SOURCES for k in _kernels_in(src)}
    used = set(re.findall(r'"(gridflow_\w+)"', (ROOT / "gridflow" / "backends" / "gpu.py").read_text()))
    assert used, "gridflow/backends/gpu.py launches no gridflow_* kernel"
    assert used <= declared, f"launched but not declared: {sorted(used - declared)}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_nvcc_compiles(src, arch, tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found: install the CUDA toolkit or put nvcc on PATH (or set CUDA_HOME)")
    out = tmp_path / f"{src.stem}.{arch}.cubin"
    cmd = [nvcc, f"-arch={arch}", "-cubin", "--Werror", "all-warnings", "-o", str(out), str(src)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    cubin = out.read_bytes()
    for name in _kernels_in(src):
        assert name.encode() in cubin, f"{name} missing from the {arch} cubin"


def _find_nvrtc():
    """(libnvrtc, libnvrtc-builtins or None), from pip's nvidia packages, a CUDA toolkit or the linker path."""
    dirs = [Path(p) / "nvidia" / sub / "lib" for p in sys.path if p for sub in ("cu13", "cuda_nvrtc")]
    dirs += [Path(h) / "lib64" for h in _cuda_homes()]
    for d in dirs:
        libs = sorted(glob.glob(str(d / "libnvrtc.so*")))
        libs = [p for p in libs if ".alt." not in p]
        if libs:
            builtins = sorted(p for p in glob.glob(str(d / "libnvrtc-builtins.so*")) if ".alt." not in p)
            return libs[-1], (builtins[-1] if builtins else None)
    name = ctypes.util.find_library("nvrtc")
    return (name, None) if name else (None, None)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_nvrtc_compiles(src, arch):
    path, builtins = _find_nvrtc()
    if path is None:
        pytest.skip("libnvrtc not found (pip install nvidia-cuda-nvrtc, or a CUDA toolkit with lib64/libnvrtc.so)")
    try:
        if builtins:
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        lib = ctypes.CDLL(path)
    except OSError as e:
        pytest.skip(f"libnvrtc does not load here: {e}")
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.read_bytes(), src.name.encode(), 0, None, None) == 0
    try:
        opts = (ctypes.c_char_p * 1)(f"--gpu-architecture={arch}".encode())
        rc = lib.nvrtcCompileProgram(prog, 1, opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(max(size.value, 1))
        lib.nvrtcGetProgramLog(prog, buf)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    assert rc == 0, buf.value.decode(errors="replace")
    assert not buf.value.strip(), f"NVRTC warnings:\n{buf.value.decode(errors='replace')}"
