"""Frame -> Result for one model: the glue between preprocess, the interpreter and postprocess.

Built once per process (the interpreter, labels and anchors are set up here, never per frame).
The three steps are separate methods so a pipeline can time them and run them in different
threads: prepare() fills a tensor of its own (not the interpreter's input buffer), so the next
frame can be preprocessed while the current one is being invoked; infer() copies it in (one
memcpy of ~270 kB, a few microseconds) and invokes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecam.config.model import ModelSection
from edgecam.core.postprocess import check_labels, classify, detect
from edgecam.core.preprocess import Geometry, InputSpec, prepare
from edgecam.errors import ModelError
from edgecam.models.files import ResolvedModel, resolve_model
from edgecam.runtime.interpreter import Runner, load_runner
from edgecam.runtime.open import open_runner
from edgecam.types import Frame, Result


@dataclass(frozen=True, slots=True)
class Prepared:
    """A frame turned into the model's input tensor, plus how to map boxes back to it."""

    frame: Frame
    geometry: Geometry
    preprocess_ms: float
    tensor: npt.NDArray[Any]


class Engine:
    """One model, one interpreter, for the life of the process."""

    #: prepare() does not touch the interpreter, so a pipeline may call it from another thread.
    prepare_detached = True

    def __init__(self, resolved: ResolvedModel, runner: Runner, section: ModelSection) -> None:
        spec = resolved.spec
        self.resolved = resolved
        self.runner = runner
        #: The interpreter's thread count, and the one `model.threads` pinned (None: free, so
        #: adaptive execution may change it with use_threads()).
        self.threads = runner.num_threads or section.threads or os.cpu_count() or 1
        self.threads_fixed = section.threads
        self.name = spec.name
        self.task = spec.task
        self.threshold = section.threshold if section.threshold is not None else spec.threshold
        self.top_k = section.top_k or spec.top_k
        self.allow = frozenset(section.labels) or None
        self.labels = resolved.labels
        self.label_offset = spec.label_offset
        resize = section.resize or spec.resize
        if len(runner.inputs) != 1:
            raise ModelError(
                f"{resolved.model_path}: expected a model with 1 input image, "
                f"got {len(runner.inputs)} inputs"
            )
        self.input_spec = InputSpec.from_tensor(runner.inputs[0], resize)
        if self.allow and self.labels:
            unknown = sorted(self.allow - set(self.labels))
            if unknown:
                raise ModelError(
                    f"--labels: {', '.join(unknown)} not in the labels of model {self.name} "
                    f"(e.g. {', '.join(self.labels[self.label_offset : self.label_offset + 5])})"
                )
        if self.task == "classification":
            check_labels(runner.outputs[0].shape[-1], self.labels, self.label_offset, self.name)

    def prepare(self, frame: Frame, pixel_width: int | None = None) -> Prepared:
        """pixel_width: real image width when rows carry stride padding (picamera2 YUV420)."""
        start = time.perf_counter()
        spec = self.input_spec
        tensor = np.empty((1, spec.height, spec.width, 3), spec.dtype)
        geometry = prepare(frame, spec, tensor, pixel_width)
        return Prepared(frame, geometry, (time.perf_counter() - start) * 1000, tensor)

    def lighten(self, prepared: Prepared) -> Prepared:
        """The prepared frame without its pixels (the tensor and geometry are all that is
        left to use), for runs where no sink looks at pixels: a frame queued behind the
        interpreter then holds ~270 kB instead of a decoded image (1 MB at 768x432)."""
        frame = prepared.frame
        empty = frame.pixels[:0] if frame.pixel_format == "YUV420" else frame.pixels[:0, :0]
        light = dataclasses.replace(frame, pixels=empty, size=(frame.width, frame.height))
        return dataclasses.replace(prepared, frame=light)

    def infer(self, prepared: Prepared) -> tuple[list[npt.NDArray[Any]], float]:
        start = time.perf_counter()
        outputs = self.runner.run(prepared.tensor)
        return outputs, (time.perf_counter() - start) * 1000

    def postprocess(
        self, prepared: Prepared, outputs: list[npt.NDArray[Any]], invoke_ms: float
    ) -> Result:
        start = time.perf_counter()
        frame = prepared.frame
        if self.task == "classification":
            output: Any = classify(
                outputs[0],
                self.runner.outputs[0],
                self.labels,
                label_offset=self.label_offset,
                top_k=self.top_k,
                threshold=self.threshold,
            )
        else:
            output = detect(
                outputs,
                self.runner.outputs,
                self.labels,
                label_offset=self.label_offset,
                threshold=self.threshold,
                geometry=prepared.geometry,
                allow=self.allow,
                input_size=(self.input_spec.height, self.input_spec.width),
            )
        post_ms = (time.perf_counter() - start) * 1000
        return Result(
            seq=frame.seq,
            timestamp=frame.timestamp,
            monotonic=frame.monotonic,
            model=self.name,
            width=frame.width,
            height=frame.height,
            output=output,
            timings_ms={
                "preprocess": prepared.preprocess_ms,
                "invoke": invoke_ms,
                "postprocess": post_ms,
            },
            source=frame.source,
            frame=frame,
        )

    def process(self, frame: Frame, pixel_width: int | None = None) -> Result:
        """All three steps in the calling thread (one-shot commands, the sequential baseline)."""
        prepared = self.prepare(frame, pixel_width)
        outputs, invoke_ms = self.infer(prepared)
        return self.postprocess(prepared, outputs, invoke_ms)

    def use_threads(self, threads: int) -> None:
        """Reload the interpreter with another thread count (between pipeline segments, never
        while a frame is in flight). The old interpreter is dropped first so the two never
        share memory; the runtime was already chosen and probed, so loading is ~0.1 s."""
        if threads == self.threads:
            return
        runner = self.runner
        path, runtime, version = runner.model_path, runner.runtime, runner.runtime_version
        runner.close()
        self.runner = load_runner(path, runtime, version, threads)  # type: ignore[arg-type]
        self.threads = threads  # load_runner invoked once: XNNPACK applied, buffers allocated

    def warm_up(self) -> None:
        """An invoke before the first frame's clock starts (caches warm, buffers allocated)."""
        self.runner.input_view()[...] = 0
        self.runner.invoke()


def open_engine(section: ModelSection, state_dir: Path | None = None) -> Engine:
    """state_dir: where ``runtime = "auto"`` caches its choice (``service.state_dir``)."""
    resolved = resolve_model(
        section.name, models_dir=section.models_dir, labels_file=section.labels_file
    )
    runner = open_runner(
        resolved.model_path,
        runtime=section.runtime,
        num_threads=section.threads,
        trusted=resolved.verified,
        state_dir=state_dir,
    )
    return Engine(resolved, runner, section)
