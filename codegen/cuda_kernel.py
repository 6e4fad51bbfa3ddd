"""CudaKernel: CUDA C for one operator, compiled and launched through CuPy on first call."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from schedules.errors import AutoschedError


class GpuUnavailable(AutoschedError, RuntimeError):
    """A cuda kernel was called where no GPU (or no CuPy) is present."""


_CUPY = None


def cupy_module():
    """CuPy with a usable device, or GpuUnavailable saying what is missing and what to do.
    Checked once per process: every kernel call asks."""
    global _CUPY
    if _CUPY is None:
        _CUPY = _usable_cupy()
    return _CUPY


def _usable_cupy():
    try:
        import cupy
    except ImportError as exc:
        raise GpuUnavailable(
            "running a 'cuda' kernel needs CuPy and an NVIDIA GPU: `pip install 'autosched[gpu]'` "
            f"({exc}). Without a GPU, build for 'cuda-sim' to run the same schedule on the CPU") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or a driver without devices
        raise GpuUnavailable(f"running a 'cuda' kernel needs an NVIDIA GPU, and CUDA reports none "
                             f"({type(exc).__name__}: {exc}). Build for 'cuda-sim' to run the same "
                             f"schedule on the CPU") from None
    if count < 1:
        raise GpuUnavailable("running a 'cuda' kernel needs an NVIDIA GPU; CUDA reports 0 devices. "
                             "Build for 'cuda-sim' to run the same schedule on the CPU")
    return cupy


@dataclass(frozen=True, eq=False)
class CudaKernel:
    """The kernels of one operator on a GPU. Building gives the source and launch geometry
    on any machine; CuPy compiles (NVRTC) and loads them on the first call."""
    op: object
    target: object
    config: object
    source: str
    loopnest: object = field(repr=False)
    launches: tuple = ()
    temps: tuple = ()               # (shape, dtype) of each global scratch buffer
    _loaded: dict = field(default_factory=dict, repr=False)  # function handles, once compiled

    @staticmethod
    def create(op, target, config, nest, source, launches) -> "CudaKernel":
        temps = tuple((tuple(b.shape), b.dtype) for b in nest.temps)
        return CudaKernel(op, target, config, source, nest, tuple(launches), temps)

    def artifact(self) -> dict:
        """What running the kernel needs, for a process that did not build it (no space,
        no templates): the source, the launches and the scratch buffers."""
        return dict(source=self.source, launches=self.launches, temps=self.temps)

    @staticmethod
    def from_artifact(op, target, config, artifact: dict) -> "CudaKernel":
        return CudaKernel(op, target, config, artifact["source"], None, tuple(artifact["launches"]),
                          tuple(artifact["temps"]))

    @property
    def origin(self) -> str:
        """"source" until the first call compiles the kernels, then "compiled"."""
        return "compiled" if "functions" in self._loaded else "source"

    @property
    def compile_seconds(self) -> float:
        return self._loaded.get("seconds", 0.0)

    def compile(self):
        """Compile and load the kernels on the current device (cached by CuPy on disk)."""
        if "functions" not in self._loaded:
            cupy = cupy_module()
            start = time.perf_counter()
            module = cupy.RawModule(code=self.source, options=("-std=c++17",))
            self._loaded["functions"] = [module.get_function(l.name) for l in self.launches]
            self._loaded["seconds"] = time.perf_counter() - start
        return self._loaded["functions"]

    def device_arrays(self, arrays) -> list:
        """The inputs as C-contiguous CuPy arrays on the device, checked against the operator."""
        cupy = cupy_module()
        if len(arrays) != len(self.op.inputs):
            raise ValueError(f"operator {self.op.name} takes {len(self.op.inputs)} inputs "
                             f"({', '.join(t.name for t in self.op.inputs)}), got {len(arrays)}")
        out = []
        for t, a in zip(self.op.inputs, arrays):
            shape, dtype = tuple(getattr(a, "shape", ())), str(getattr(a, "dtype", type(a).__name__))
            if shape != t.shape or dtype != t.dtype:
                raise ValueError(f"operator {self.op.name}: input {t.name} expects {t.dtype} {t.shape}, "
                                 f"got {dtype} {shape}")
            a = cupy.ascontiguousarray(cupy.asarray(a))
            if a.data.ptr % 16:  # a view at an odd offset: float4 loads need 16-byte alignment
                a = a.copy()
            out.append(a)
        return out

    def __call__(self, *arrays, out=None):
        """Run on numpy or CuPy inputs; returns CuPy arrays (a tuple for several outputs)."""
        outs, launch = self._prepared(arrays, out)
        launch()
        return outs[0] if len(outs) == 1 else tuple(outs)

    def launcher(self, *arrays, out=None):
        """A call with everything checked and allocated once: only the launches remain, as in
        a model's inner loop. For timing; the returned function takes no arguments."""
        return self._prepared(arrays, out)[1]

    def _prepared(self, arrays, out) -> tuple:
        cupy = cupy_module()
        functions = self.compile()
        inputs = self.device_arrays(arrays)
        outs = self._outputs(cupy, out)
        temps = [cupy.empty(shape, dtype=dtype) for shape, dtype in self.temps]
        args = tuple(inputs + outs + temps)
        calls = tuple((fn, launch.grid, launch.block) for fn, launch in zip(functions, self.launches))

        def launch():
            for fn, grid, block in calls:
                fn(grid, block, args)
        return outs, launch

    def _outputs(self, cupy, out) -> list:
        specs = self.op.outputs
        if out is None:
            return [cupy.empty(t.shape, dtype=t.dtype) for t in specs]
        given = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(given) != len(specs):
            raise ValueError(f"operator {self.op.name} has {len(specs)} outputs, out= gave {len(given)}")
        for t, a in zip(specs, given):
            if not isinstance(a, cupy.ndarray) or a.shape != t.shape or str(a.dtype) != t.dtype \
                    or not a.flags.c_contiguous:
                raise ValueError(f"operator {self.op.name}: out for {t.name} must be a C-contiguous "
                                 f"CuPy {t.dtype} array of shape {t.shape}")
        return given
