"""Winograd F(m x m, 3x3) matrices: B^T (input), G (weights) and A^T (output) for each tile size m."""
from __future__ import annotations

import numpy as np

# F(m x m, 3x3): an (m+2)x(m+2) input patch gives an m x m output tile with (m+2)^2
# multiplies per channel pair instead of 9 m^2: 2.25x fewer FLOPs in the GEMMs at m=2, 4x at
# m=4 (whose larger coefficients cost accuracy: about 1e-5 of the output instead of 1e-7).
# Each m has B^T (input), G (weights) and A^T (output) matrices.
TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], float)),
}
