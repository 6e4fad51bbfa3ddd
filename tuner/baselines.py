"""What a user would run instead: numpy op by op, PyTorch eager, ONNX Runtime and OpenVINO.

Each baseline is built from the library operator's name and parameters (the same ones a
suite file gives), takes the same numpy inputs as the autosched kernel, and is checked
against the operator's reference before it is timed. Frameworks that are not installed, or
that cannot express a workload, report why instead of a time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

BASELINES = ("numpy", "pytorch", "onnxruntime", "openvino")
# Inputs that a deployed model holds as constant parameters (ONNX initializers).
_PARAMETERS = {"dense": ("weight", "bias"), "conv2d": ("weight", "bias"),
               "depthwise_conv2d": ("weight", "bias"), "layer_norm": ("gamma", "beta")}


def parameter_names(workload) -> tuple:
    """The inputs of a workload that a deployed model holds as constants (its weights)."""
    return _PARAMETERS.get(workload.op_name, ())


class BaselineUnavailable(Exception):
    """This baseline cannot run this workload here; the message says why."""


@dataclass(frozen=True)
class Workload:
    op_name: str                       # a schedules.ops.LIBRARY name
    params: dict = field(default_factory=dict)


class Baseline(Protocol):
    name: str

    def prepare(self, workload: Workload, op, inputs: list, threads: int) -> Callable[[], object]:
        """A zero-argument callable computing the workload on `inputs`, or BaselineUnavailable."""


def _spec(workload: Workload, op) -> dict:
    """The operator's parameters with the library's defaults filled in."""
    import inspect

    from schedules import ops
    sig = inspect.signature(ops.LIBRARY[workload.op_name])
    bound = sig.bind_partial(**workload.params)
    bound.apply_defaults()
    return dict(bound.arguments)


def _shortcut(spec: dict, inputs: list) -> tuple:
    """(the shortcut input added before the activation, or None; the other inputs): with
    residual=True the shortcut is the operator's last input."""
    if spec.get("residual"):
        return inputs[-1], list(inputs[:-1])
    return None, list(inputs)


def _pairs(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


# -- numpy -------------------------------------------------------------------------------------
def _np_activation(y, activation):
    import numpy as np
    if activation is None:
        return y
    if activation == "relu":
        return np.maximum(y, 0)
    if activation == "gelu":
        from scipy.special import erf
        return 0.5 * y * (1.0 + erf(y * np.float32(1 / math.sqrt(2.0))))
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-y))
    if activation == "tanh":
        return np.tanh(y)
    raise BaselineUnavailable(f"numpy: no activation {activation!r}")


def _np_windows(data, s: dict):
    """(N, C, OH, OW, R, S) view of the zero-padded NCHW data."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view
    (sh, sw), (ph, pw), (dh, dw) = _pairs(s["stride"]), _pairs(s["padding"]), _pairs(s["dilation"])
    R, S = s["R"], s["S"]
    padded = np.pad(data, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else data
    win = sliding_window_view(padded, ((R - 1) * dh + 1, (S - 1) * dw + 1), axis=(2, 3))
    return win[:, :, ::sh, ::sw, ::dh, ::dw]


class NumpyBaseline:
    """numpy (OpenBLAS for the products) run op by op, the way a numpy user writes it."""
    name = "numpy"

    def prepare(self, workload, op, inputs, threads):
        import numpy as np
        s, name = _spec(workload, op), workload.op_name
        skip, inputs = _shortcut(s, inputs)
        if name in ("matmul", "batch_matmul"):
            a, b = inputs
            return lambda: np.matmul(a, b)
        if name == "dense":
            x, w, *rest = inputs
            bias = rest[0] if rest else None

            def dense():
                out = x @ w.T
                if bias is not None:
                    out = out + bias
                if skip is not None:
                    out = out + skip
                return _np_activation(out, s["activation"])
            return dense
        if name == "softmax":
            (x,) = inputs

            def softmax():
                e = np.exp(x - x.max(axis=1, keepdims=True))
                return e / e.sum(axis=1, keepdims=True)
            return softmax
        if name == "layer_norm":
            x, gamma, beta = inputs
            eps = np.float32(s["eps"])
            return lambda: (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps) \
                * gamma + beta
        if name in ("conv2d", "depthwise_conv2d") and s["layout"] == "NCHW":
            data, w, *rest = inputs
            bias = rest[0] if rest else None
            depthwise = name == "depthwise_conv2d"

            def conv():
                win = _np_windows(data, s)
                N, C, OH, OW, R, S = win.shape
                if depthwise:
                    m = s["multiplier"]
                    out = np.einsum("ncxyrs,cmrs->ncmxy", win, w.reshape(C, m, R, S)).reshape(N, C * m, OH, OW)
                else:  # im2col, then one BLAS product
                    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(N * OH * OW, C * R * S)
                    out = (cols @ w.reshape(w.shape[0], -1).T).reshape(N, OH, OW, -1).transpose(0, 3, 1, 2)
                if bias is not None:
                    out = out + bias[None, :, None, None]
                if skip is not None:
                    out = out + skip
                return _np_activation(out, s["activation"])
            return conv
        raise BaselineUnavailable(f"numpy: no baseline for {name} {workload.params}")


# -- PyTorch -----------------------------------------------------------------------------------
class TorchBaseline:
    """PyTorch CPU eager (oneDNN / MKL kernels), under inference_mode."""
    name = "pytorch"

    def prepare(self, workload, op, inputs, threads):
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            raise BaselineUnavailable("pytorch: not installed (pip install torch==2.13.0)") from None
        torch.set_num_threads(threads)
        s, name = _spec(workload, op), workload.op_name
        skip, inputs = _shortcut(s, inputs)
        t = [torch.from_numpy(a) for a in inputs]
        skip = None if skip is None else torch.from_numpy(skip)
        activate = {None: lambda y: y, "relu": torch.relu, "gelu": F.gelu, "sigmoid": torch.sigmoid,
                    "tanh": torch.tanh}.get(s.get("activation"))

        def act(y):
            return activate(y if skip is None else y + skip)

        def run(fn):
            def call():
                with torch.inference_mode():
                    return fn().numpy()
            return call
        if name in ("matmul", "batch_matmul"):
            return run(lambda: torch.matmul(t[0], t[1]))
        if name == "dense":
            return run(lambda: act(F.linear(t[0], t[1], t[2] if len(t) > 2 else None)))
        if name == "softmax":
            return run(lambda: torch.softmax(t[0], dim=1))
        if name == "layer_norm":
            return run(lambda: F.layer_norm(t[0], (t[0].shape[1],), t[1], t[2], eps=s["eps"]))
        if name in ("conv2d", "depthwise_conv2d") and s["layout"] == "NCHW":
            groups = s["C"] if name == "depthwise_conv2d" else 1
            kw = dict(stride=_pairs(s["stride"]), padding=_pairs(s["padding"]),
                      dilation=_pairs(s["dilation"]), groups=groups)
            return run(lambda: act(F.conv2d(t[0], t[1], t[2] if len(t) > 2 else None, **kw)))
        raise BaselineUnavailable(f"pytorch: no baseline for {name} {workload.params}")


# -- ONNX (Runtime and OpenVINO) -----------------------------------------------------------------
def onnx_model(workload: Workload, op, inputs: list):
    """An ONNX model of the workload built with onnx.helper; parameters are initializers."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise BaselineUnavailable("onnx: not installed (pip install 'autosched[bench]')") from None
    s, name = _spec(workload, op), workload.op_name
    names = [t.name for t in op.inputs]
    params = _PARAMETERS.get(name, ())
    graph_inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape))
                    for n, a in zip(names, inputs) if n not in params]
    inits = [numpy_helper.from_array(a, n) for n, a in zip(names, inputs) if n in params]
    nodes, opset = [], 17
    y = "y"

    def activation(x, act, out):
        if act is None:
            nodes.append(helper.make_node("Identity", [x], [out]))
        elif act == "relu":
            nodes.append(helper.make_node("Relu", [x], [out]))
        elif act == "sigmoid":
            nodes.append(helper.make_node("Sigmoid", [x], [out]))
        elif act == "tanh":
            nodes.append(helper.make_node("Tanh", [x], [out]))
        elif act == "gelu":  # the erf form; ONNX Runtime fuses it into one Gelu kernel
            inits.extend([numpy_helper.from_array(_f32(1 / math.sqrt(2.0)), "inv_sqrt2"),
                          numpy_helper.from_array(_f32(1.0), "one"), numpy_helper.from_array(_f32(0.5), "half")])
            nodes.extend([helper.make_node("Mul", [x, "inv_sqrt2"], ["g0"]),
                          helper.make_node("Erf", ["g0"], ["g1"]),
                          helper.make_node("Add", ["g1", "one"], ["g2"]),
                          helper.make_node("Mul", [x, "g2"], ["g3"]),
                          helper.make_node("Mul", ["g3", "half"], [out])])
        else:
            raise BaselineUnavailable(f"onnx: no activation {act!r}")
    # A shortcut input (residual=True) is the last one, added after the Gemm or Conv node
    # (ONNX Runtime fuses Conv + Add + Relu).
    operands = names[:-1] if s.get("residual") else names

    def finish(z):
        if s.get("residual"):
            nodes.append(helper.make_node("Add", [z, names[-1]], ["z_sum"]))
            z = "z_sum"
        activation(z, s["activation"], y)
    if name in ("matmul", "batch_matmul"):
        nodes.append(helper.make_node("MatMul", names[:2], [y]))
    elif name == "dense":
        nodes.append(helper.make_node("Gemm", operands, ["z"], transB=1))
        finish("z")
    elif name == "softmax":
        nodes.append(helper.make_node("Softmax", names, [y], axis=-1))
    elif name == "layer_norm":
        nodes.append(helper.make_node("LayerNormalization", names, [y], axis=-1, epsilon=float(s["eps"])))
    elif name in ("conv2d", "depthwise_conv2d") and s["layout"] == "NCHW":
        (sh, sw), (ph, pw), (dh, dw) = _pairs(s["stride"]), _pairs(s["padding"]), _pairs(s["dilation"])
        nodes.append(helper.make_node("Conv", operands, ["z"], strides=[sh, sw], pads=[ph, pw, ph, pw],
                                      dilations=[dh, dw], group=s["C"] if name == "depthwise_conv2d" else 1))
        finish("z")
    else:
        raise BaselineUnavailable(f"onnx: no model for {name} {workload.params}")
    out_shape = list(op.outputs[0].shape)
    graph = helper.make_graph(nodes, workload.op_name, graph_inputs,
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    feeds = {n: a for n, a in zip(names, inputs) if n not in params}
    return model, feeds


def _f32(v):
    import numpy as np
    return np.array(v, dtype=np.float32)


class OnnxRuntimeBaseline:
    name = "onnxruntime"

    def prepare(self, workload, op, inputs, threads):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BaselineUnavailable("onnxruntime: not installed (pip install 'autosched[bench]')") from None
        model, feeds = onnx_model(workload, op, inputs)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, feeds)[0]


class OpenVinoBaseline:
    name = "openvino"

    def prepare(self, workload, op, inputs, threads):
        try:
            import openvino as ov
        except ImportError:
            raise BaselineUnavailable("openvino: not installed (pip install openvino)") from None
        import os
        import tempfile
        model, feeds = onnx_model(workload, op, inputs)
        core = ov.Core()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            with open(path, "wb") as f:
                f.write(model.SerializeToString())
            compiled = core.compile_model(core.read_model(path), "CPU",
                                          {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                           "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        order = [feeds[inp.get_any_name()] for inp in compiled.inputs]

        def call():
            request.infer(order)
            return request.get_output_tensor(0).data
        return call


def make_baselines(names) -> list:
    """Baselines by name; objects that already are baselines (a name and prepare) pass through."""
    table = {"numpy": NumpyBaseline, "pytorch": TorchBaseline, "onnxruntime": OnnxRuntimeBaseline,
             "openvino": OpenVinoBaseline}
    unknown = [n for n in names if isinstance(n, str) and n not in table]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}")
    return [table[n]() if isinstance(n, str) else n for n in names]


def versions() -> dict:
    """Installed versions of every library the bench may time."""
    from importlib import metadata
    out = {}
    for dist in ("autosched", "numpy", "numba", "llvmlite", "scipy", "torch", "onnxruntime", "openvino"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
