"""Runs generated CUDA C on the CPU, for tests: the kernel source is compiled by g++ against a
small shim (one std::thread per CUDA thread, __syncthreads as a std::barrier over the block,
__shfl_xor_sync through a per-warp exchange), and each block's threads run together.

cuda-sim checks a GPU schedule's index math; this checks what the CUDA emitter printed:
barriers, warp shuffles, C's integer types and promotions, names, vector copies.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess

import numpy as np

SHIM = r"""
#include <cmath>
#include <cstring>
#include <barrier>
#include <memory>
#include <thread>
#include <vector>
using std::exp; using std::log; using std::sqrt; using std::tanh; using std::erf; using std::fabs;
using std::floor; using std::fmax; using std::fmin;
struct dim3 { int x, y, z; };
thread_local dim3 threadIdx, blockIdx;
thread_local std::barrier<>* block_barrier_;
thread_local std::barrier<>* warp_barrier_;
thread_local long long* warp_slots_;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(n)
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
static inline void __syncthreads() { block_barrier_->arrive_and_wait(); }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
template <class T> static inline T __shfl_xor_sync(unsigned, T value, int offset) {
  T* slots = reinterpret_cast<T*>(warp_slots_);
  int lane = threadIdx.x & 31;
  warp_barrier_->arrive_and_wait();   // the previous exchange has been read by every lane
  slots[lane] = value;
  warp_barrier_->arrive_and_wait();
  return slots[lane ^ offset];
}
"""

LAUNCH = r"""
extern "C" void launch_{k}(void** a) {{
  const int threads = {threads};
  for (int b = 0; b < {blocks}; ++b) {{
    std::barrier<> block(threads);
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    for (int w = 0; w * 32 < threads; ++w)
      warps.emplace_back(new std::barrier<>(threads - 32 * w < 32 ? threads - 32 * w : 32));
    std::vector<long long> slots(warps.size() * 32);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back([&, t]() {{
      threadIdx = {{t, 0, 0}}; blockIdx = {{b, 0, 0}};
      block_barrier_ = &block; warp_barrier_ = warps[t / 32].get(); warp_slots_ = &slots[(t / 32) * 32];
      {name}({args});
    }});
    for (auto& th : pool) th.join();
  }}
}}
"""


def _library(kernel, cache_dir: str):
    from codegen.cuda_source import C_TYPES
    nest = kernel.loopnest
    buffers = list(nest.inputs) + list(nest.outputs) + list(nest.temps)
    launches = []
    for k, launch in enumerate(kernel.launches):
        if launch.grid[1:] != (1, 1) or launch.block[1:] != (1, 1):
            raise NotImplementedError("the emulator runs x-only grids and blocks")
        args = ", ".join(f"({'const ' if i < len(nest.inputs) else ''}{C_TYPES[b.dtype]}*)a[{i}]"
                         for i, b in enumerate(buffers))
        launches.append(LAUNCH.format(k=k, threads=launch.block[0], blocks=launch.grid[0],
                                      name=launch.name, args=args))
    source = SHIM + kernel.source + "\n".join(launches)
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    path = os.path.join(cache_dir, f"emulated-{digest}.so")
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        src = path[:-3] + ".cpp"
        with open(src, "w") as f:
            f.write(source)
        run = subprocess.run(["g++", "-O1", "-std=c++20", "-pthread", "-shared", "-fPIC", "-w",
                              "-o", path + ".tmp", src], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"g++ could not compile the emulated kernel:\n{run.stderr[:4000]}")
        os.replace(path + ".tmp", path)
    return ctypes.CDLL(path)


def run_emulated(kernel, inputs, cache_dir: str, timeout: float = 120.0):
    """The outputs of a cuda Kernel (from codegen.build) run on these numpy inputs. The
    kernels run in a child process: one that hangs (threads waiting at a barrier or a shuffle
    that others never reach) fails after `timeout` seconds instead of hanging the tests."""
    import multiprocessing as mp
    _library(kernel, cache_dir)  # compile here, so compiler errors surface in this process
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, kernel, inputs, cache_dir), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(f"the emulated kernels of {kernel.op.name} did not finish in {timeout:.0f} s: "
                               f"some threads wait at a barrier or shuffle that others never reach")
        try:
            status, value = parent.recv()
        except EOFError:
            status, value = "error", f"the process running them died (exit code {proc.exitcode})"
    finally:
        proc.kill()
        proc.join()
    if status != "ok":
        raise RuntimeError(f"the emulated kernels of {kernel.op.name} failed: {value}")
    return value


def _child(conn, kernel, inputs, cache_dir):
    try:
        conn.send(("ok", _run(kernel, inputs, cache_dir)))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _run(kernel, inputs, cache_dir: str):
    lib = _library(kernel, cache_dir)
    nest = kernel.loopnest
    arrays = [np.ascontiguousarray(x) for x in inputs]
    def garbage(b):  # what a kernel that forgets to write shows
        fill = np.nan if b.dtype.startswith("float") else True if b.dtype == "bool" else -12345
        return np.full(tuple(b.shape), fill, dtype=b.dtype)
    outs = [garbage(b) for b in nest.outputs]
    temps = [garbage(b) for b in nest.temps]
    pointers = (ctypes.c_void_p * len(arrays + outs + temps))(*[a.ctypes.data for a in arrays + outs + temps])
    for k in range(len(kernel.launches)):
        getattr(lib, f"launch_{k}")(pointers)
    return outs[0] if len(outs) == 1 else tuple(outs)
