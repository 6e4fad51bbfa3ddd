"""Code generation: LoopNest -> Numba source -> compiled, cached Kernel."""
from .build import CompileError, build
from .kernel import Kernel

__all__ = ["build", "Kernel", "CompileError"]
