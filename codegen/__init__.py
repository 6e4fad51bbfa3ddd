"""Code generation: LoopNest -> Numba source -> compiled, cached Kernel."""
from .build import CompileError, build, kernel_source
from .kernel import Kernel

__all__ = ["build", "kernel_source", "Kernel", "CompileError"]
