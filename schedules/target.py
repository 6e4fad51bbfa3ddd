"""Target: the hardware a schedule is made for, and its stable key for records."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

# ISA features that change generated code; the key lists those the host has, in this order.
_CPU_FEATURES_OF_INTEREST = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx", "sse4.2",
                             "neon", "asimd", "sve")


_HOST = None

# Per-core data-cache sizes (L1, L2, L3 bytes) assumed where the host does not report its own.
DEFAULT_CACHE_BYTES = (32 * 1024, 512 * 1024, 32 * 1024 * 1024)


def _host_cache_bytes() -> tuple:
    """L1d, L2 and L3 sizes from Linux sysfs; the defaults for any level it does not list."""
    sizes = dict(zip((1, 2, 3), DEFAULT_CACHE_BYTES))
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = os.listdir(base)
    except OSError:
        return DEFAULT_CACHE_BYTES
    for entry in entries:
        try:
            with open(f"{base}/{entry}/level") as f:
                level = int(f.read())
            with open(f"{base}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{entry}/size") as f:
                text = f.read().strip().upper()
        except (OSError, ValueError):
            continue
        if level in sizes and kind in ("Data", "Unified") and text:
            scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1], 1)
            try:
                sizes[level] = int(text.rstrip("KMG")) * scale
            except ValueError:
                pass
    return (sizes[1], sizes[2], sizes[3])


@dataclass(frozen=True)
class Target:
    kind: str                     # "cpu", "cuda" or "cuda-sim"
    model: str = ""               # CPU model name or GPU device name
    arch: str = ""                # LLVM CPU name (znver3, skylake-avx512) or compute capability
    features: tuple = ()          # ISA features that change code generation
    cores: int = 1
    extra: tuple = field(default=())  # (name, value) pairs, e.g. compute capability
    # L1/L2/L3 bytes, for the cost model's working-set features; not part of the key because
    # the CPU model already determines them.
    cache_bytes: tuple = field(default=DEFAULT_CACHE_BYTES, compare=False)

    @property
    def key(self) -> str:
        feats = "+".join(self.features)
        return f"{self.kind}|{self.model}|{self.arch}|{feats}|{self.cores}" + \
            "".join(f"|{k}={v}" for k, v in self.extra)

    @staticmethod
    def from_key(key: str) -> "Target":
        """The Target a records key describes (the inverse of `key`), for tools that read
        records of other machines; cache sizes, not in the key, take the defaults."""
        parts = key.split("|")
        if len(parts) < 5 or not parts[4].isdigit():
            raise ValueError(f"cannot read target key {key!r}; expected kind|model|arch|features|cores")
        extra = tuple(tuple(p.split("=", 1)) for p in parts[5:] if "=" in p)
        return Target(parts[0], parts[1], parts[2], tuple(f for f in parts[3].split("+") if f),
                      int(parts[4]), extra)

    @property
    def is_gpu(self) -> bool:
        """Whether schedules for this target are GPU schedules (run on a GPU or simulated)."""
        return self.kind in ("cuda", "cuda-sim")

    @property
    def gpu(self):
        """The GPU limits (GpuLimits) of a cuda or cuda-sim target."""
        from .gpu_target import limits_of
        return limits_of(self)

    @staticmethod
    def cuda(arch: str = "sm_90", **limits) -> "Target":
        """A GPU described explicitly, for spaces, sources and record keys on any machine:
        Target.cuda(arch="sm_80", name="NVIDIA A100-SXM4-80GB", sm_count=108). Limits not given
        take the values of the documented default GPU (see schedules/gpu_target.py)."""
        from .gpu_target import describe
        return describe(arch, **limits)

    @property
    def vector_bits(self) -> int:
        if "avx512f" in self.features:
            return 512
        if "avx2" in self.features or "avx" in self.features:
            return 256
        return 128

    def vector_lanes(self, dtype: str) -> int:
        return max(1, self.vector_bits // (64 if dtype in ("float64", "int64") else 32))

    @staticmethod
    def host_cpu() -> "Target":
        """This machine: model name, LLVM's CPU name and ISA features, and usable cores.

        The features come from LLVM (the compiler that will generate the code) when llvmlite
        is importable, which it is wherever the Numba backend is; else from /proc/cpuinfo.
        """
        global _HOST
        if _HOST is not None:
            return _HOST
        model, flags, arch = platform.processor() or platform.machine(), set(), ""
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name") and ":" in line:
                        model = line.split(":", 1)[1].strip()
                    elif line.startswith(("flags", "Features")) and ":" in line:
                        flags.update(x.replace("_", ".") for x in line.split(":", 1)[1].split())
        except OSError:
            pass
        try:
            import llvmlite.binding as llvm  # lazily: only to describe the host
            arch = llvm.get_host_cpu_name()
            flags = {name for name, on in llvm.get_host_cpu_features().items() if on}
        except Exception:  # no llvmlite, or a platform it cannot describe
            pass
        features = tuple(f for f in _CPU_FEATURES_OF_INTEREST if f in flags)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        _HOST = Target("cpu", model, arch, features, cores, cache_bytes=_host_cache_bytes())
        return _HOST


def as_target(target) -> Target:
    if isinstance(target, Target):
        return target
    if target == "cpu" or target == "llvm":
        return Target.host_cpu()
    if target == "cuda":
        from .gpu_target import cuda_target
        return cuda_target()
    if target == "cuda-sim":
        from .gpu_target import cuda_target, simulated
        return simulated(cuda_target())
    if isinstance(target, str):
        raise ValueError(f"unknown target {target!r}; use 'cpu', 'cuda' (device 0, or a default "
                         f"H100 description where no GPU is present), 'cuda-sim' (the GPU schedule "
                         f"run on the CPU), or a Target object such as Target.cuda(arch='sm_80')")
    raise TypeError(f"target must be a string or a Target, got {type(target).__name__}")
