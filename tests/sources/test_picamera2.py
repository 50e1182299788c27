"""The picamera2 adapter against RecordedPicamera2, a stand-in fed with the asset video.

Checked: the configuration asked for (main RGB888 at scene size, lores at model size, no
queue, frame rate), the RGB -> YUV420 fallback on Pi 4-class ISPs, that delivered frames
converted to RGB equal what the "ISP" produced (within YUV 4:2:0 tolerance), that every
request is released even when make_array fails, that close() stops and closes the camera,
and reconnect / give-up when the camera stalls.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from edgecam.cli import main
from edgecam.config.model import ModelSection
from edgecam.config.pipeline import PipelineSection
from edgecam.core.preprocess import to_rgb
from edgecam.errors import SourceError, SourceLost
from edgecam.pipeline.engine import open_engine
from edgecam.pipeline.pipeline import Pipeline
from edgecam.sources import ReconnectPolicy, Source
from edgecam.sources.picamera2 import LoresFormat, Picamera2Source
from edgecam.types import Detections, Frame, Result
from tests.support.recorded_picamera2 import RecordedCameraFactory, RecordedPicamera2, isp_scale

Array = npt.NDArray[np.uint8]
FAST = ReconnectPolicy(initial_s=0.01, max_s=0.02, give_up_s=0.5)
MODEL = (300, 300)


@pytest.fixture(scope="module")
def scenes(asset_video: Path, asset_images: Path) -> list[Array]:
    """Eight video frames spread over the clip (people, wall, table) plus a colourful photo."""
    cap = cv2.VideoCapture(str(asset_video))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames: list[Array] = []
    for index in range(0, count // 2, count // 16):
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, pixels = cap.read()
        assert ok
        frames.append(np.asarray(pixels, dtype=np.uint8))
    cap.release()
    coffee = cv2.imread(str(asset_images / "coffee.png"))
    assert coffee is not None
    return [*frames, np.asarray(coffee, dtype=np.uint8)]


@pytest.mark.parametrize(
    ("isp", "lores_format", "delivered"),
    [
        ("pisp", "auto", "BGR"),  # Pi 5: RGB888 lores accepted; B,G,R in memory
        ("vc4", "auto", "YUV420"),  # Pi 4: RGB lores refused, falls back to YUV420
        ("pisp", "YUV420", "YUV420"),  # explicit YUV420
        ("pisp", "BGR888", "RGB"),  # BGR888 is R,G,B in memory
    ],
)
def test_frames_match_the_scene_after_conversion(
    scenes: list[Array], isp: str, lores_format: LoresFormat, delivered: str
) -> None:
    factory = RecordedCameraFactory(scenes, isp=isp)
    source = Picamera2Source(0, lores_size=MODEL, lores_format=lores_format, camera_factory=factory)
    assert isinstance(source, Source) and source.live and source.name == "picamera2:0"
    for index, scene in enumerate(scenes):
        frame = source.read()
        assert frame is not None and frame.seq == index
        assert frame.pixel_format == delivered
        assert frame.size == (1280, 720)  # boxes map to the main stream's pixels
        rgb = to_rgb(frame.pixels, frame.pixel_format, source.pixel_width).astype(np.int16)
        expected = cv2.cvtColor(isp_scale(scene, MODEL), cv2.COLOR_BGR2RGB).astype(np.int16)
        assert rgb.shape == expected.shape
        error = np.abs(rgb - expected)
        if delivered == "YUV420":  # chroma is shared by 2x2 pixels: edges differ a little
            assert error.mean() < 3.0 and np.percentile(error, 99) < 30
        else:
            assert error.max() == 0
    source.close()


def test_yuv420_frames_keep_stride_padding(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes, isp="vc4", stride_align=64)
    with Picamera2Source(0, lores_size=MODEL, camera_factory=factory) as source:
        frame = source.read()
    assert frame is not None
    stride = factory.cameras[0].stream_configuration("lores")["stride"]
    assert stride == 320 and frame.pixels.shape == (450, 320)
    assert source.pixel_width == 300
    assert frame.pixel_size == (320, 300)  # what the array holds; pixel_width says what is real


def test_configuration_asked_for(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes, isp="vc4")
    source = Picamera2Source(
        1, main_size=(1920, 1080), lores_size=(224, 224), fps=15, camera_factory=factory
    )
    camera = factory.cameras[0]
    config = camera.camera_config
    assert config is not None and camera.camera_num == 1
    assert config["main"]["size"] == (1920, 1080) and config["main"]["format"] == "RGB888"
    assert config["lores"]["size"] == (224, 224) and config["lores"]["format"] == "YUV420"
    assert config["queue"] is False and config["controls"] == {"FrameRate": 15.0}
    assert camera.calls[:4] == [
        "create_video_configuration",
        "configure",  # RGB888 lores: refused on vc4
        "create_video_configuration",
        "configure",  # YUV420 lores: accepted
    ]
    assert camera.started and source.fps == 15
    source.close()


def test_without_lores_frames_come_from_main(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes)
    with Picamera2Source(0, main_size=(640, 360), camera_factory=factory) as source:
        frame = source.read()
    assert frame is not None and frame.pixel_format == "BGR" and frame.size is None
    assert frame.pixels.shape == (360, 640, 3)
    config = factory.cameras[0].camera_config
    assert config is not None and config["lores"] is None


def test_close_stops_and_closes_the_camera(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes)
    source = Picamera2Source(0, lores_size=MODEL, camera_factory=factory)
    for _ in range(3):
        assert source.read() is not None
    source.close()
    source.close()  # idempotent: the camera is stopped and closed once
    camera = factory.cameras[0]
    assert camera.calls[-2:] == ["stop", "close"] and camera.calls.count("close") == 1
    assert not camera.started and not camera.is_open
    assert all(r.ref_count == 0 for r in camera.requests) and len(camera.requests) == 3
    assert source.read() is None


def test_failed_make_array_still_releases_and_fails_open(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes, fail_make_array=True)
    with pytest.raises(SourceError, match="picamera2:0: cannot open: RuntimeError"):
        Picamera2Source(0, lores_size=MODEL, camera_factory=factory)
    camera = factory.cameras[0]
    assert len(camera.requests) == 1 and camera.requests[0].ref_count == 0
    assert not camera.is_open  # a failed open does not leave the camera held


def test_make_array_failure_mid_stream_releases_and_reconnects(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes)
    source = Picamera2Source(0, lores_size=MODEL, reconnect=FAST, camera_factory=factory)
    assert source.read() is not None and source.read() is not None
    first = factory.cameras[0]
    first.fail_make_array = True
    frame = source.read()  # fails on the first camera, reopens a second one
    assert frame is not None and frame.seq == 2 and source.reconnects == 1
    assert all(r.ref_count == 0 for r in first.requests) and len(first.requests) == 3
    assert not first.is_open and len(factory.cameras) == 2
    source.close()


def test_a_bug_mid_stream_surfaces_at_once_instead_of_reconnecting(
    scenes: list[Array], caplog: pytest.LogCaptureFixture
) -> None:
    """Only what a camera raises when it fails means "reconnect"; a TypeError is a bug and
    would otherwise hide as "reconnecting" for give_up_s."""
    factory = RecordedCameraFactory(scenes)
    slow = ReconnectPolicy(initial_s=0.01, max_s=0.02, give_up_s=300)
    source = Picamera2Source(0, lores_size=MODEL, reconnect=slow, camera_factory=factory)
    assert source.read() is not None
    factory.cameras[0].fail_make_array = TypeError("'NoneType' object is not subscriptable")
    with pytest.raises(TypeError, match="not subscriptable"):
        source.read()
    assert source.reconnect_attempts == 0 and len(factory.cameras) == 1
    assert "reconnect" not in caplog.text
    source.close()


def test_a_bug_at_open_is_not_reported_as_a_camera_that_cannot_open(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes, fail_make_array=AttributeError("no 'planes'"))
    with pytest.raises(AttributeError, match="planes"):
        Picamera2Source(0, lores_size=MODEL, camera_factory=factory)
    assert not factory.cameras[0].is_open  # the camera is still released


def test_no_camera_with_that_number_is_a_clear_error() -> None:
    def no_cameras(camera_num: int) -> RecordedPicamera2:
        return [][camera_num]  # what picamera2 does: index its (empty) camera list

    with pytest.raises(SourceError, match="no camera number 1 is connected"):
        Picamera2Source(1, lores_size=MODEL, camera_factory=no_cameras)


def test_a_broken_picamera2_install_is_not_called_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing it fails with something other than ImportError (a NumPy ABI clash, say):
    that surfaces as itself, not as "cannot be imported, apt install it"."""
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    with pytest.raises(ValueError, match="binary incompatibility"):
        Picamera2Source(0, lores_size=MODEL)


def test_broken_picamera2_through_the_cli_is_one_line_and_exit_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    asset_models: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text("raise ValueError('numpy.dtype size changed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(asset_models))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    rc = main(["run", "--source", "picamera2:0", "--max-frames", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("edgecam: internal error: ValueError: numpy.dtype size changed")
    assert "__init__.py:1" in err[0]  # where it happened


def test_picamera2_not_installed_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text("import libcamera_bindings_only_on_pi_os\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    with pytest.raises(SourceError, match="picamera2 cannot be imported") as info:
        Picamera2Source(0, lores_size=MODEL)
    assert "python3-picamera2" in str(info.value)


def test_stalled_camera_reconnects_with_backoff(
    scenes: list[Array], caplog: pytest.LogCaptureFixture
) -> None:
    # Each camera delivers 3 frames then stalls; open attempts 1 and 2 find no camera.
    factory = RecordedCameraFactory(scenes, failed_opens={1, 2}, frames_before_stall=3)
    source = Picamera2Source(0, lores_size=MODEL, reconnect=FAST, camera_factory=factory)
    with caplog.at_level(logging.WARNING, logger="edgecam.sources"):
        frames = [source.read() for _ in range(5)]
    assert [f.seq for f in frames if f is not None] == [0, 1, 2, 3, 4]
    assert source.state == "ok" and source.reconnects == 1 and source.reconnect_attempts == 3
    attempts = [r.getMessage() for r in caplog.records if "reconnect attempt" in r.getMessage()]
    assert len(attempts) == 3 and "TimeoutError" in attempts[0]
    assert "Camera __init__ sequence did not complete" in attempts[1]
    # the scene went on while reconnecting: the second camera starts where the first stopped
    assert factory.cameras[1].requests and not factory.cameras[0].is_open
    source.close()


def test_camera_that_never_returns_raises_source_lost(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes, failed_opens=range(1, 10_000), frames_before_stall=2)
    source = Picamera2Source(0, lores_size=MODEL, reconnect=FAST, camera_factory=factory)
    assert source.read() is not None and source.read() is not None
    with pytest.raises(SourceLost) as info:
        source.read()
    text = str(info.value)
    assert text.startswith("picamera2:0: no frame for 0.5 s after")
    assert "Camera __init__ sequence did not complete" in text
    assert source.state == "reconnecting" and source.reconnect_attempts >= 2
    source.close()


def test_give_up_zero_means_no_reconnect(scenes: list[Array]) -> None:
    factory = RecordedCameraFactory(scenes, frames_before_stall=1)
    policy = ReconnectPolicy(give_up_s=0)
    source = Picamera2Source(0, lores_size=MODEL, reconnect=policy, camera_factory=factory)
    assert source.read() is not None
    with pytest.raises(SourceLost):
        source.read()
    assert factory.opens == 1


def test_stand_in_refuses_to_block_forever(scenes: list[Array]) -> None:
    # Guards the stand-in itself: a real camera with no frame blocks when wait is not a
    # number; the adapter must never rely on that.
    camera = RecordedPicamera2(0, frames=scenes[:1])
    camera.configure(camera.create_video_configuration(main={"size": (640, 360)}))
    camera.start()
    camera.capture_request(wait=1.0).release()
    with pytest.raises(AssertionError, match="block forever"):
        camera.capture_request()


class _AsReplay:
    """The adapter, read as a replay (every frame processed) so two runs can be compared."""

    live = False
    fps = None
    frame_count = None

    def __init__(self, source: Picamera2Source) -> None:
        self._source = source
        self.name = source.name

    @property
    def pixel_width(self) -> int | None:
        return self._source.pixel_width

    def read(self) -> Frame | None:
        return self._source.read()

    def close(self) -> None:
        self._source.close()


class _Collect:
    def __init__(self) -> None:
        self.results: list[Result] = []

    def handle(self, result: Result) -> None:
        self.results.append(result)

    def close(self, timeout: float = 0.0) -> None:
        pass


def test_pipeline_crops_stride_padding_before_inference(
    scenes: list[Array], asset_models: Path
) -> None:
    """Padded YUV420 rows (Pi 4 lores: 300 px wide, 320 px stride) through the threaded
    pipeline give exactly the detections of unpadded rows: the padding never reaches the model."""
    engine = open_engine(
        ModelSection(name="ssd_mobilenet_v1", models_dir=asset_models, runtime="litert", threads=1)
    )
    runs: dict[int, list[Result]] = {}
    for align in (4, 64):  # stride 300 (no padding) and 320
        factory = RecordedCameraFactory(scenes, isp="vc4", stride_align=align)
        source = Picamera2Source(0, lores_size=MODEL, camera_factory=factory)
        collect = _Collect()
        pipeline = Pipeline(_AsReplay(source), engine, [collect], config=PipelineSection())  # type: ignore[arg-type]
        summary = pipeline.run(max_frames=len(scenes))
        assert summary.processed == len(scenes)
        assert factory.cameras[0].stream_configuration("lores")["stride"] == (
            300 if align == 4 else 320
        )
        runs[align] = collect.results
    found = 0
    for plain, padded in zip(runs[4], runs[64], strict=True):
        a, b = plain.output, padded.output
        assert isinstance(a, Detections) and isinstance(b, Detections)
        assert a.label == b.label
        np.testing.assert_array_equal(a.score, b.score)
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        found += len(a.label)
    assert found > 0  # the scenes have people in them: something was compared
