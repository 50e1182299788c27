"""Screenshots the README shows, written by the browser test (docs/*.png).

Posterized to 5 bits per channel before PNG compression: the flat page colours barely move,
the camera picture loses noise nobody needs, and the files shrink by half (≈ 150 kB each).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BITS = 5


def save_screenshot(png: bytes, path: Path) -> None:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path.name}: the browser's screenshot is not a PNG")
    step = 1 << (8 - BITS)
    posterized = (image // step) * step + step // 2
    ok, buf = cv2.imencode(".png", posterized, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError(f"{path.name}: PNG encoding failed")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
