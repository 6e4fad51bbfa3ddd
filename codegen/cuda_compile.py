"""CUDA C -> PTX and cubin with NVRTC (from PyPI) or nvcc, and ptxas's resource report.

Both work with no GPU present, so every generated kernel is compiled and its registers, shared
memory and threads are checked against the target's limits on any machine.
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from .build import CompileError


class CudaToolchainMissing(RuntimeError):
    """Neither NVRTC nor nvcc is available to compile CUDA C."""


@dataclass(frozen=True)
class Resources:
    """What ptxas reports for one kernel."""
    registers: int
    shared_bytes: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int


# -- NVRTC through ctypes -------------------------------------------------------------------
_NVRTC = None


def nvrtc_path() -> str | None:
    """libnvrtc from the nvidia-cuda-nvrtc wheel, or from a CUDA toolkit."""
    roots = [os.path.join(p, "nvidia") for p in sys.path if p and os.path.isdir(os.path.join(p, "nvidia"))]
    patterns = [os.path.join(r, "*", "lib", "libnvrtc.so*") for r in roots]
    patterns += ["/usr/local/cuda/lib64/libnvrtc.so*", "/usr/local/cuda-*/lib64/libnvrtc.so*",
                 "/usr/lib/x86_64-linux-gnu/libnvrtc.so*"]
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if "builtins" not in os.path.basename(path):
                return path
    return None


def _nvrtc():
    global _NVRTC
    if _NVRTC is None:
        path = nvrtc_path()
        if path is None:
            return None
        lib = ctypes.CDLL(path)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        _NVRTC = lib
    return _NVRTC


def _nvrtc_compile(source: str, options: list) -> tuple:
    """(result code, log, program handle) of one NVRTC compile."""
    lib = _nvrtc()
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"autosched.cu", 0, None, None))
    opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
    code = lib.nvrtcCompileProgram(prog, len(options), opts)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    return code, log.value.decode(errors="replace"), prog


def _check(lib, code):
    if code != 0:
        raise CompileError(f"NVRTC: {lib.nvrtcGetErrorString(code).decode()}")


def _nvrtc_output(prog, what: str) -> bytes:
    lib = _nvrtc()
    size = ctypes.c_size_t()
    _check(lib, getattr(lib, f"nvrtcGet{what}Size")(prog, ctypes.byref(size)))
    buf = ctypes.create_string_buffer(size.value)
    _check(lib, getattr(lib, f"nvrtcGet{what}")(prog, buf))
    return buf.raw[:size.value]


def _destroy(prog):
    _nvrtc().nvrtcDestroyProgram(ctypes.byref(prog))


# -- compiling ---------------------------------------------------------------------------
def available_compiler() -> str | None:
    if _nvrtc() is not None:
        return "nvrtc"
    if shutil.which("nvcc"):
        return "nvcc"
    return None


def _compiler(compiler: str) -> str:
    if compiler == "auto":
        found = available_compiler()
        if found is None:
            raise CudaToolchainMissing(
                "no CUDA compiler: install NVRTC with `pip install 'autosched[gpu]'` (the "
                "nvidia-cuda-nvrtc wheel), or put a CUDA toolkit's nvcc on the PATH")
        return found
    if compiler not in ("nvrtc", "nvcc"):
        raise ValueError(f"compiler must be 'auto', 'nvrtc' or 'nvcc', got {compiler!r}")
    if compiler == "nvrtc" and _nvrtc() is None:
        raise CudaToolchainMissing("NVRTC not found; `pip install nvidia-cuda-nvrtc`")
    if compiler == "nvcc" and not shutil.which("nvcc"):
        raise CudaToolchainMissing("nvcc is not on the PATH")
    return compiler


def compile_ptx(source: str, arch: str, compiler: str = "auto") -> str:
    """PTX for `arch` (sm_90 -> compute_90). Raises CompileError with the compiler's log."""
    compiler = _compiler(compiler)
    virtual = arch.replace("sm_", "compute_")
    if compiler == "nvrtc":
        code, log, prog = _nvrtc_compile(source, [f"--gpu-architecture={virtual}", "-std=c++17"])
        try:
            if code != 0:
                raise CompileError(f"NVRTC could not compile the kernel for {arch}:\n{log}")
            return _nvrtc_output(prog, "PTX").rstrip(b"\0").decode()
        finally:
            _destroy(prog)
    with tempfile.TemporaryDirectory(prefix="autosched-nvcc-") as tmp:
        src, out = os.path.join(tmp, "kernel.cu"), os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(source)
        run = subprocess.run(["nvcc", "--ptx", f"-arch={virtual}", "-o", out, src],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise CompileError(f"nvcc could not compile the kernel for {arch}:\n{run.stderr}")
        with open(out) as f:
            return f.read()


def compile_cubin(source: str, arch: str) -> tuple:
    """(cubin bytes, {kernel: Resources}) for a real architecture, through NVRTC, whose
    embedded ptxas reports each kernel's resources; no GPU is needed."""
    _compiler("nvrtc")
    code, log, prog = _nvrtc_compile(source, [f"--gpu-architecture={arch}", "-std=c++17",
                                               "--ptxas-options=--verbose"])
    try:
        if code != 0:
            raise CompileError(f"NVRTC could not compile the kernel for {arch}:\n{log}")
        return _nvrtc_output(prog, "CUBIN"), parse_ptxas_report(log)
    finally:
        _destroy(prog)


def ptxas_resources(ptx: str, arch: str) -> dict:
    """{kernel: Resources} from `ptxas --verbose` on PTX (ptxas from a CUDA toolkit)."""
    if not shutil.which("ptxas"):
        raise CudaToolchainMissing("ptxas is not on the PATH; use compile_cubin (NVRTC) instead")
    with tempfile.TemporaryDirectory(prefix="autosched-ptxas-") as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        run = subprocess.run(["ptxas", "--verbose", f"--gpu-name={arch}", "-o", os.devnull, path],
                             capture_output=True, text=True)
    if run.returncode != 0:
        raise CompileError(f"ptxas rejected the PTX for {arch}:\n{run.stderr}")
    return parse_ptxas_report(run.stderr + run.stdout)


_ENTRY = re.compile(r"(?:Compiling entry function|Function properties for) '?([A-Za-z_][\w$]*)'?")
_USED = re.compile(r"Used (\d+) registers(?:.*?, (\d+) bytes smem)?")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas_report(text: str) -> dict:
    found, current, frame = {}, None, (0, 0, 0)
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = m.group(1)
            continue
        m = _FRAME.search(line)
        if m and current:
            frame = tuple(int(x) for x in m.groups())
            continue
        m = _USED.search(line)
        if m and current:
            found[current] = Resources(int(m.group(1)), int(m.group(2) or 0), *frame)
            frame = (0, 0, 0)
    return found


def resource_violations(launches, resources: dict, limits) -> list:
    """What breaks the GPU's limits, per kernel, in words; empty when every kernel fits."""
    problems = []
    for launch in launches:
        r = resources.get(launch.name)
        if r is None:
            problems.append(f"{launch.name}: ptxas reported no resources")
            continue
        if launch.threads > limits.max_threads:
            problems.append(f"{launch.name}: {launch.threads} threads per block > {limits.max_threads}")
        if r.registers > limits.regs_per_thread:
            problems.append(f"{launch.name}: {r.registers} registers per thread > {limits.regs_per_thread}")
        if r.registers * launch.threads > limits.regs_per_block:
            problems.append(f"{launch.name}: {r.registers} registers x {launch.threads} threads > "
                            f"{limits.regs_per_block} per block")
        if r.shared_bytes > limits.shared_per_block:
            problems.append(f"{launch.name}: {r.shared_bytes} bytes of shared memory > {limits.shared_per_block}")
    return problems


@dataclass(frozen=True)
class Verification:
    """A kernel source compiled for a GPU, what each kernel uses, and what breaks its limits."""
    compiler: str
    ptx: str
    resources: dict
    violations: tuple

    @property
    def ok(self) -> bool:
        return not self.violations


def verify(source: str, launches, target, compiler: str = "auto") -> Verification:
    """Compile to PTX and to the target's machine code, and check every kernel's registers,
    shared memory and threads per block against the target's limits. NVRTC's own ptxas
    reports resources; with nvcc, the toolkit's ptxas reads nvcc's PTX (NVRTC from PyPI may
    emit a newer PTX version than an older toolkit's ptxas accepts)."""
    compiler = _compiler(compiler)
    limits = target.gpu
    ptx = compile_ptx(source, target.arch, compiler)
    if compiler == "nvrtc":
        _, resources = compile_cubin(source, target.arch)
    else:
        resources = ptxas_resources(ptx, target.arch)
    return Verification(compiler, ptx, resources, tuple(resource_violations(launches, resources, limits)))
