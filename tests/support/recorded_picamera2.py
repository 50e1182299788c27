"""A stand-in for picamera2.Picamera2 that plays recorded frames (no Pi camera here).

It implements exactly the calls edgecam's adapter makes, with picamera2's names, signatures
and return shapes (checked against raspberrypi/picamera2 picamera2.py and request.py):
create_video_configuration -> dict, configure (validating like picamera2, including Pi 4's
"lores stream must be YUV"), stream_configuration -> the stream dict with "stride" filled in,
start/stop/close, capture_request(wait=seconds) -> request with make_array(name) / release().

Arrays follow the real memory layouts: "RGB888" is B,G,R in memory, "BGR888" R,G,B;
"YUV420" is I420 reshaped to (H*3//2, stride) with each plane's row padding kept (the chroma
planes have stride/2, so two chroma rows share one array row). The padding is filled with a
non-zero value so a consumer that forgets to crop it gets visibly wrong pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.uint8]
FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888", "YUV420")
PADDING_VALUE = 173


def isp_scale(bgr: Array, size: tuple[int, int]) -> Array:
    """What the ISP does to a stream: scale the full field of view to `size` (width, height)."""
    return np.asarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _pad_rows(plane: Array, stride: int) -> Array:
    out = np.full((plane.shape[0], stride), PADDING_VALUE, np.uint8)
    out[:, : plane.shape[1]] = plane
    return out


def yuv420_with_stride(bgr: Array, stride: int) -> Array:
    """I420 of `bgr` laid out as picamera2's make_array returns it: (H*3//2, stride)."""
    h, w = bgr.shape[:2]
    i420 = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8).reshape(-1)
    y = i420[: w * h].reshape(h, w)
    u = i420[w * h : w * h * 5 // 4].reshape(h // 2, w // 2)
    v = i420[w * h * 5 // 4 :].reshape(h // 2, w // 2)
    planes = [_pad_rows(y, stride), _pad_rows(u, stride // 2), _pad_rows(v, stride // 2)]
    flat: Array = np.concatenate([p.reshape(-1) for p in planes])
    return flat.reshape(h * 3 // 2, stride)


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


class RecordedRequest:
    """picamera2's CompletedRequest: holds one frame until release()."""

    def __init__(self, camera: RecordedPicamera2, scene: Array, config: dict[str, Any]) -> None:
        self._camera = camera
        self._scene = scene
        self.config = config
        self.ref_count = 1

    def make_array(self, name: str) -> Array:
        if self.ref_count <= 0:
            raise RuntimeError("make_array on a released request")
        stream = self.config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        failure = self._camera.fail_make_array
        if isinstance(failure, BaseException):
            raise failure
        if failure:
            raise RuntimeError("simulated mapping failure")
        bgr = isp_scale(self._scene, stream["size"])
        fmt = stream["format"]
        if fmt == "YUV420":
            return yuv420_with_stride(bgr, stream["stride"])
        if fmt == "RGB888":
            return bgr
        if fmt == "BGR888":
            return np.ascontiguousarray(bgr[:, :, ::-1])
        alpha = np.full((*bgr.shape[:2], 1), 255, np.uint8)
        return np.concatenate([bgr if fmt == "XRGB8888" else bgr[:, :, ::-1], alpha], axis=2)

    def release(self) -> None:
        self.ref_count -= 1
        if self.ref_count < 0:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")


class RecordedPicamera2:
    """Picamera2(camera_num) fed from `frames` (BGR scenes), at most `frames_before_stall`.

    fail_make_array: True fails like libcamera (RuntimeError); an exception is raised as is.
    """

    def __init__(
        self,
        camera_num: int = 0,
        *,
        frames: Sequence[Array],
        first: int = 0,
        isp: Literal["pisp", "vc4"] = "pisp",
        stride_align: int = 64,
        frames_before_stall: int | None = None,
        fail_make_array: bool | BaseException = False,
    ) -> None:
        self.camera_num = camera_num
        self.frames = frames
        self.isp = isp
        self.stride_align = stride_align
        self.frames_before_stall = frames_before_stall
        self.fail_make_array = fail_make_array
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.is_open = True
        self.delivered = 0
        self.requests: list[RecordedRequest] = []
        self.calls: list[str] = []
        self._next = first

    def create_video_configuration(  # noqa: PLR0917 - mirrors picamera2's signature
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
    ) -> dict[str, Any]:
        self.calls.append("create_video_configuration")
        main_cfg = self._stream({"format": "XBGR8888", "size": (1280, 720)}, main or {})
        lores_cfg = None
        if lores is not None:
            lores_cfg = self._stream({"format": "YUV420", "size": main_cfg["size"]}, lores)
        return {
            "use_case": "video",
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main_cfg,
            "lores": lores_cfg,
            "raw": raw,
            "controls": dict(controls or {}),
            "display": display,
            "encode": encode,
        }

    @staticmethod
    def _stream(defaults: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
        for key in updates:
            if key not in ("format", "size"):
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ...")
        return {**defaults, **updates}

    def configure(self, camera_config: dict[str, Any]) -> None:
        self.calls.append("configure")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.camera_config = None
        main, lores = camera_config["main"], camera_config["lores"]
        for name, stream in (("main", main), ("lores", lores)):
            if stream is None:
                continue
            size = stream["size"]
            if stream["format"] not in FORMATS:
                raise RuntimeError(f"Bad format {stream['format']} in stream {name}")
            if type(size) is not tuple or len(size) != 2 or size[0] % 2 or size[1] % 2:
                raise RuntimeError("width and height should be even")
        if lores is not None:
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self.isp == "vc4" and lores["format"] != "YUV420":
                raise RuntimeError("lores stream must be YUV")
        config = dict(camera_config)
        config["main"] = self._with_stride(main)
        config["lores"] = None if lores is None else self._with_stride(lores)
        self.camera_config = config

    def _with_stride(self, stream: dict[str, Any]) -> dict[str, Any]:
        width, height = stream["size"]
        if stream["format"] == "YUV420":
            stride = _align(width, self.stride_align)
            framesize = stride * height * 3 // 2
        else:
            stride = _align(width * (3 if stream["format"].endswith("888") else 4), 64)
            framesize = stride * height
        return {**stream, "stride": stride, "framesize": framesize}

    def stream_configuration(self, name: str = "main") -> dict[str, Any]:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        return self.camera_config[name]  # type: ignore[no-any-return]

    def start(self) -> None:
        self.calls.append("start")
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.calls.append("stop")
        self.started = False

    def close(self) -> None:
        self.calls.append("close")
        self.started = False
        self.is_open = False

    def capture_request(
        self, wait: float | bool | None = None, signal_function: Any = None, flush: Any = None
    ) -> RecordedRequest:
        if not self.started or self.camera_config is None:
            raise RuntimeError("capture_request on a camera that is not started")
        stalled = self.frames_before_stall is not None and (
            self.delivered >= self.frames_before_stall
        )
        if stalled or self._next >= len(self.frames):
            if wait is None or wait is True:
                raise AssertionError("a real camera would block forever: pass wait=seconds")
            raise TimeoutError("Job timed out")
        request = RecordedRequest(self, self.frames[self._next], self.camera_config)
        self._next += 1
        self.delivered += 1
        self.requests.append(request)
        return request


class RecordedCameraFactory:
    """camera_factory for the adapter: builds RecordedPicamera2s and remembers them.

    failed_opens: which open attempts (0 = the first) raise like picamera2 does when no camera
    is found. Later cameras continue the recording where the previous one stopped.
    """

    def __init__(
        self, frames: Sequence[Array], *, failed_opens: Iterable[int] = (), **camera: Any
    ) -> None:
        self.frames = frames
        self.failed_opens = set(failed_opens)
        self.camera_kwargs = camera
        self.opens = 0
        self.cameras: list[RecordedPicamera2] = []

    def __call__(self, camera_num: int) -> RecordedPicamera2:
        attempt = self.opens
        self.opens += 1
        if attempt in self.failed_opens:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        first = self.cameras[-1]._next if self.cameras else 0
        camera = RecordedPicamera2(
            camera_num, frames=self.frames, first=first, **self.camera_kwargs
        )
        self.cameras.append(camera)
        return camera
