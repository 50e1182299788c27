"""The plain loop of the picamera2/TFLite examples: the baseline `edgecam bench` holds
`edgecam run` against.

OpenCV read -> resize -> cvtColor -> set_tensor -> invoke -> get_tensor -> a dict ->
json.dumps, one thread, the same model, runtime and interpreter threads, one JSON line per
frame into a file. Written the way those examples are (outputs by position, labels read once,
nothing else), because the promise is that edgecam's defaults are never slower than what a
user would write in ten minutes. It runs as its own process (``python -m
edgecam.pipeline.plainloop``) so that, like `edgecam run`, it pays its own start-up, and it
imports nothing from edgecam.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

MODULES = {"litert": "ai_edge_litert.interpreter", "tflite": "tflite_runtime.interpreter"}


def _record(n: int, tensors: list[Any], labels: list[str], threshold: float) -> dict[str, Any]:
    if len(tensors) >= 3:  # SSD with the postprocess op: boxes, classes, scores, count
        boxes, classes, scores = tensors[0][0], tensors[1][0], tensors[2][0]
        detections = [
            {
                "label": labels[int(c)] if int(c) < len(labels) else str(int(c)),
                "score": float(s),
                "box": [float(v) for v in b],
            }
            for b, c, s in zip(boxes, classes, scores, strict=False)
            if s >= threshold
        ]
        return {"frame": n, "time": time.time(), "detections": detections}
    scores = tensors[0][0]
    top = np.argsort(scores)[::-1][:5]
    classes_out = [
        {"label": labels[i] if i < len(labels) else str(i), "score": float(scores[i])} for i in top
    ]
    return {"frame": n, "time": time.time(), "classes": classes_out}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecam.pipeline.plainloop")
    parser.add_argument("--model", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--runtime", choices=sorted(MODULES), default="litert")
    parser.add_argument("--labels", default="")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    interpreter_cls = importlib.import_module(MODULES[args.runtime]).Interpreter
    interpreter = interpreter_cls(model_path=args.model, num_threads=args.threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    outputs = interpreter.get_output_details()
    height, width = int(inp["shape"][1]), int(inp["shape"][2])
    labels: list[str] = []
    if args.labels:
        with open(args.labels, encoding="utf-8") as handle:
            labels = [line.strip() for line in handle]
    capture = cv2.VideoCapture(args.source)
    count = 0
    with open(args.output, "w", encoding="utf-8") as out:
        while count < args.frames:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(cv2.resize(frame, (width, height)), cv2.COLOR_BGR2RGB)
            tensor = rgb[np.newaxis]
            if inp["dtype"] == np.float32:
                tensor = (tensor.astype(np.float32) - 127.5) / 127.5
            elif inp["dtype"] == np.int8:
                tensor = (tensor.astype(np.int16) - 128).astype(np.int8)
            interpreter.set_tensor(inp["index"], tensor)
            interpreter.invoke()
            tensors = [interpreter.get_tensor(o["index"]) for o in outputs]
            out.write(json.dumps(_record(count, tensors, labels, args.threshold)) + "\n")
            count += 1
    capture.release()
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
