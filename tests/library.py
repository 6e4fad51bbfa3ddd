"""Library operators at small odd and even shapes, shared by the correctness tests."""
from schedules import ops, te


def library_cases():
    """(id, constructor) pairs; constructors so each test builds fresh operators."""
    return [
        ("matmul-even", lambda: ops.matmul(16, 24, 8)),
        ("matmul-odd", lambda: ops.matmul(17, 13, 9)),
        ("batch_matmul-even", lambda: ops.batch_matmul(2, 8, 6, 4)),
        ("batch_matmul-odd", lambda: ops.batch_matmul(3, 5, 7, 3)),
        ("dense-gelu-even", lambda: ops.dense(8, 16, 12, bias=True, activation="gelu")),
        ("dense-relu-odd", lambda: ops.dense(7, 9, 11, bias=True, activation="relu")),
        ("dense-sigmoid-nobias", lambda: ops.dense(5, 6, 7, bias=False, activation="sigmoid")),
        ("dense-tanh", lambda: ops.dense(6, 5, 4, bias=True, activation="tanh")),
        ("conv2d-nchw-even", lambda: ops.conv2d(1, 4, 8, 8, 4, 3, 3, padding=1)),
        ("conv2d-nchw-odd", lambda: ops.conv2d(2, 3, 7, 9, 5, 3, 2, stride=2, padding=1, dilation=2,
                                               bias=True, activation="relu")),
        ("conv2d-nhwc-even", lambda: ops.conv2d(1, 4, 6, 6, 8, 3, 3, padding=1, layout="NHWC",
                                                bias=True, activation="relu")),
        ("conv2d-nhwc-odd", lambda: ops.conv2d(1, 3, 7, 5, 3, 1, 3, stride=(1, 2), padding=(0, 1),
                                               layout="NHWC")),
        ("depthwise-even", lambda: ops.depthwise_conv2d(1, 4, 8, 8, 3, 3, padding=1)),
        ("depthwise-odd", lambda: ops.depthwise_conv2d(1, 3, 7, 7, 3, 3, stride=2, padding=1,
                                                       layout="NHWC", bias=True, activation="relu")),
        ("maxpool-even", lambda: ops.pool2d(1, 4, 8, 8, 2, pool_type="max")),
        ("maxpool-odd", lambda: ops.pool2d(1, 3, 9, 7, 3, stride=2, padding=1, pool_type="max")),
        ("avgpool-even", lambda: ops.pool2d(1, 2, 8, 8, 2, pool_type="avg", layout="NHWC")),
        ("avgpool-odd", lambda: ops.pool2d(2, 3, 7, 7, 3, stride=2, padding=1, pool_type="avg",
                                           count_include_pad=False)),
        ("softmax-even", lambda: ops.softmax(8, 16)),
        ("softmax-odd", lambda: ops.softmax(5, 13)),
        ("layer_norm-even", lambda: ops.layer_norm(8, 16)),
        ("layer_norm-odd", lambda: ops.layer_norm(7, 11)),
        ("elementwise-broadcast", lambda: ops.elementwise([(6, 10), (10,)],
                                                         lambda a, b: te.tanh(a * b) + 1.0)),
        ("elementwise-odd", lambda: ops.elementwise([(3, 5, 7), (5, 1), (7,)],
                                                    lambda a, b, c: te.maximum(a - b, c) * 0.5)),
    ]
