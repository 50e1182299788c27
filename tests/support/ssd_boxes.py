"""Test helpers for SSD box coding: synthetic raw outputs need the inverse of decoding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edgecam.core.ssd import DEFAULT_SCALES, generate_anchors, reference_feature_map_sizes

FloatArray = npt.NDArray[np.float32]


def reference_anchors(height: int, width: int) -> FloatArray:
    """Anchors of the reference SSD-MobileNet pipeline configs for a (height, width) input."""
    return generate_anchors(reference_feature_map_sizes(height, width), image_size=(height, width))


def encode_boxes(
    boxes_yxyx: npt.ArrayLike,
    anchors: npt.ArrayLike,
    scales: Sequence[float] = DEFAULT_SCALES,
) -> FloatArray:
    """Inverse of :func:`decode_boxes` (boxes must have positive height and width)."""
    box = np.asarray(boxes_yxyx, np.float64).reshape(-1, 4)
    anc = np.asarray(anchors, np.float64).reshape(-1, 4)
    sy, sx, sh, sw = scales
    h = box[:, 2] - box[:, 0]
    w = box[:, 3] - box[:, 1]
    yc = box[:, 0] + 0.5 * h
    xc = box[:, 1] + 0.5 * w
    enc = np.stack(
        [
            (yc - anc[:, 0]) / anc[:, 2] * sy,
            (xc - anc[:, 1]) / anc[:, 3] * sx,
            np.log(h / anc[:, 2]) * sh,
            np.log(w / anc[:, 3]) * sw,
        ],
        axis=1,
    )
    out: FloatArray = enc.astype(np.float32)
    return out
