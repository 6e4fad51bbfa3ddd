"""GPU targets: device 0 read through the CUDA driver, an explicit description, or the default."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from .target import Target

# The description "cuda" resolves to where no GPU is present: an NVIDIA H100 SXM5 (sm_90), so
# spaces, sources and record keys can be made on any machine. Values from NVIDIA's H100 data
# sheet and the CUDA programming guide's table of compute capability 9.0.
DEFAULT_GPU = dict(name="NVIDIA H100 80GB HBM3", sm_count=132, max_threads=1024, warp=32,
                   shared_per_block=48 * 1024, shared_optin=227 * 1024, regs_per_block=65536,
                   regs_per_thread=255, threads_per_sm=2048, shared_per_sm=228 * 1024,
                   regs_per_sm=65536, l2_bytes=50 * 1024 * 1024)

# Key order of the limits in Target.extra; the compute capability comes first.
_LIMIT_KEYS = ("sm_count", "max_threads", "warp", "shared_per_block", "shared_optin",
               "regs_per_block", "regs_per_thread", "threads_per_sm", "shared_per_sm",
               "regs_per_sm", "l2_bytes")


@dataclass(frozen=True)
class GpuLimits:
    """What a generated kernel must respect on one GPU, and what the sketch sizes tiles by."""
    arch: str                 # "sm_90"
    name: str
    sm_count: int
    max_threads: int          # threads per block
    warp: int
    shared_per_block: int     # bytes of static shared memory a block may use
    shared_optin: int
    regs_per_block: int
    regs_per_thread: int
    threads_per_sm: int
    shared_per_sm: int
    regs_per_sm: int
    l2_bytes: int

    @property
    def compute_capability(self) -> tuple:
        digits = self.arch.removeprefix("sm_").removeprefix("compute_")
        return int(digits[:-1]), int(digits[-1])


def describe(arch: str = "sm_90", **limits) -> Target:
    """A cuda Target from an architecture and limits; the rest from DEFAULT_GPU."""
    if not (isinstance(arch, str) and arch.startswith("sm_") and arch[3:].isdigit() and len(arch) >= 5):
        raise ValueError(f"GPU arch must look like 'sm_90' or 'sm_80', got {arch!r}")
    unknown = set(limits) - set(DEFAULT_GPU)
    if unknown:
        raise ValueError(f"unknown GPU limits {sorted(unknown)}; known: {sorted(DEFAULT_GPU)}")
    values = {**DEFAULT_GPU, **limits}
    for k in _LIMIT_KEYS:
        if not isinstance(values[k], int) or values[k] <= 0:
            raise ValueError(f"GPU limit {k} must be a positive int, got {values[k]!r}")
    extra = (("cc", arch[3:]),) + tuple((k, str(values[k])) for k in _LIMIT_KEYS)
    return Target("cuda", str(values["name"]), arch, (), values["sm_count"], extra)


def limits_of(target: Target) -> GpuLimits:
    if not target.is_gpu:
        raise ValueError(f"target {target.key} is not a GPU target")
    extra = dict(target.extra)
    values = {k: int(extra[k]) if k in extra else DEFAULT_GPU[k] for k in _LIMIT_KEYS}
    values["sm_count"] = target.cores
    return GpuLimits(arch=target.arch, name=target.model, **values)


def simulated(target: Target) -> Target:
    """The same GPU, simulated on the CPU: the same space and kernels, its own records."""
    import dataclasses
    return dataclasses.replace(target, kind="cuda-sim")


_DEVICE = None


def cuda_target() -> Target:
    """Device 0 as the CUDA driver reports it, or the default description when no GPU (or
    no driver) is present."""
    global _DEVICE
    if _DEVICE is None:
        _DEVICE = _device_zero() or describe("sm_90")
    return _DEVICE


# CUdevice_attribute values from cuda.h.
_ATTRIBUTES = dict(max_threads=1, shared_per_block=8, warp=10, regs_per_block=12, sm_count=16,
                   l2_bytes=38, threads_per_sm=39, cc_major=75, cc_minor=76, shared_per_sm=81,
                   regs_per_sm=82, shared_optin=97)


def _device_zero():
    """Target of device 0 through libcuda (no CuPy needed), or None without a usable GPU."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    count, dev = ctypes.c_int(0), ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return None
    if cuda.cuDeviceGet(ctypes.byref(dev), 0) != 0:
        return None
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, dev)
    values = {}
    for key, attr in _ATTRIBUTES.items():
        v = ctypes.c_int(0)
        if cuda.cuDeviceGetAttribute(ctypes.byref(v), attr, dev) != 0:
            return None
        values[key] = v.value
    arch = f"sm_{values.pop('cc_major')}{values.pop('cc_minor')}"
    return describe(arch, name=name.value.decode(errors="replace").strip(),
                    regs_per_thread=DEFAULT_GPU["regs_per_thread"], **values)
