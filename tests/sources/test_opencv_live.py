"""Live OpenCV sources without a camera: the asset video served over HTTP on 127.0.0.1.

The exchange checked: edgecam opens http://127.0.0.1:PORT/video.mp4 through OpenCV's FFmpeg
backend and reads frames; the server then drops the stream, disappears, or hangs; edgecam must
reconnect with backoff when it can, raise SourceLost after the give-up time when it cannot, and
never block longer than its open/read timeouts (a hang would trip the test timeout instead).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgecam.errors import EXIT_FAILURE, SourceError, SourceLost
from edgecam.sources import ReconnectPolicy, Source, open_source
from edgecam.sources.opencv import READ_TIMEOUT_S, OpenCVLiveSource
from edgecam.types import Frame
from tests.support.http_video import VideoServer

FAST = ReconnectPolicy(initial_s=0.05, max_s=0.2, give_up_s=1.0)


@pytest.fixture
def server(asset_video: Path) -> Iterator[VideoServer]:
    with VideoServer(asset_video, rate=2_000_000) as running:
        yield running


def _wait_for(predicate: Callable[[], bool], deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_url_source_delivers_live_bgr_frames(server: VideoServer) -> None:
    source = open_source(server.url, reconnect=FAST)
    assert isinstance(source, Source) and source.live
    assert isinstance(source, OpenCVLiveSource)
    assert source.name == f"url:{server.url}" and source.fps == 10.0
    assert source.frame_count is None and source.state == "ok"
    frames = [source.read() for _ in range(25)]
    source.close()
    assert [f.seq for f in frames if f is not None] == list(range(25))
    first = frames[0]
    assert first is not None and first.pixels.shape == (432, 768, 3)
    assert first.pixel_format == "BGR" and first.source == source.name and first.size is None
    assert source.reconnects == 0


def test_stream_drop_reconnects_and_seq_continues(
    asset_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every connection ends after 300 kB (~110 frames): like an RTSP camera dropping us.
    with VideoServer(asset_video, limit=300_000) as server:
        source = open_source(server.url, reconnect=FAST)
        assert isinstance(source, OpenCVLiveSource)
        seqs: list[int] = []
        with caplog.at_level(logging.WARNING, logger="edgecam.sources"):
            while source.reconnects < 1 or len(seqs) < 200:
                frame = source.read()
                assert frame is not None
                seqs.append(frame.seq)
        source.close()
    assert seqs == list(range(len(seqs)))  # no gap, no restart at 0 after the reconnect
    assert source.state == "ok" and source.reconnect_attempts >= 1
    assert server.requests >= 2
    assert any("reconnect attempt 1" in r.getMessage() for r in caplog.records)


def test_camera_back_after_outage_is_picked_up(asset_video: Path) -> None:
    server = VideoServer(asset_video, rate=2_000_000).start()
    policy = ReconnectPolicy(initial_s=0.05, max_s=0.2, give_up_s=60)
    source = open_source(server.url, reconnect=policy)
    assert isinstance(source, OpenCVLiveSource)
    assert source.read() is not None
    server.stop()  # unplugged: connection cut, port closed
    restart = threading.Timer(0.5, server.start)
    restart.start()
    try:
        while source.reconnects == 0:
            assert source.read() is not None
        frame = source.read()
    finally:
        restart.join()
        source.close()
        server.stop()
    assert frame is not None and source.state == "ok"


def test_server_gone_raises_source_lost_after_give_up(server: VideoServer) -> None:
    source = open_source(server.url, reconnect=FAST)
    assert source.read() is not None
    server.stop()
    with pytest.raises(SourceLost) as info:
        while source.read() is not None:
            pass
    source.close()
    assert info.value.exit_code == EXIT_FAILURE
    assert source.name in str(info.value) and "no frame for 1 s" in str(info.value)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_hung_stream_is_bounded_by_timeouts(asset_video: Path) -> None:
    # The server sends 200 kB then goes silent with the connection open, and later
    # connections are accepted but never answered: both the read and the reopen would block
    # forever without timeouts.
    with VideoServer(asset_video, stall_after=200_000) as server:
        source = OpenCVLiveSource(
            server.url,
            open_timeout_s=1.0,
            read_timeout_s=1.0,
            reconnect=ReconnectPolicy(initial_s=0.1, max_s=0.2, give_up_s=2.0),
        )
        with pytest.raises(SourceLost, match="reconnect attempts"):
            while source.read() is not None:
                pass
        source.close()
    assert source.reconnect_attempts >= 1 and source.reconnects == 0


def test_close_from_another_thread_ends_a_reconnecting_read(server: VideoServer) -> None:
    # The pipeline stops a source from its main thread while the capture thread is waiting
    # out a long backoff: the read must return None promptly instead of sleeping it out.
    policy = ReconnectPolicy(initial_s=120, max_s=120, give_up_s=600)
    source = open_source(server.url, reconnect=policy)
    assert isinstance(source, OpenCVLiveSource)
    server.stop()
    results: list[Frame | None] = []

    def capture() -> None:
        while (frame := source.read()) is not None:
            results.append(frame)
        results.append(None)

    thread = threading.Thread(target=capture)
    thread.start()
    _wait_for(lambda: source.state == "reconnecting")
    source.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert results[-1] is None


def test_missing_camera_index_names_the_device() -> None:
    with pytest.raises(SourceError) as info:
        open_source("99")
    assert "/dev/video99 does not exist" in str(info.value)
    assert "picamera2" in str(info.value)  # points Pi users at the right source


def test_non_camera_device_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="cannot open /dev/null as a V4L2 capture device"):
        open_source("/dev/null")


def test_unreachable_url_is_a_source_error_without_password() -> None:
    with VideoServer.closed_port() as port:
        url = f"http://viewer:hunter2@127.0.0.1:{port}/live.mp4"
        with pytest.raises(SourceError) as info:
            open_source(url)
    text = str(info.value)
    assert "cannot open the stream" in text and "hunter2" not in text and "viewer:********@" in text


def test_reconnecting_source_reports_a_heartbeat(server: VideoServer) -> None:
    """While the stream is gone the source tells its owner, repeatedly, until it gives up."""
    source = open_source(server.url, reconnect=ReconnectPolicy(0.3, 0.3, 1.5))
    reports: list[str] = []
    source.on_reconnecting = reports.append  # type: ignore[attr-defined]
    assert source.read() is not None
    server.stop()
    with pytest.raises(SourceLost):
        while source.read() is not None:
            pass
    source.close()
    assert len(reports) >= 3  # one per attempt at least: 1.5 s give-up / 0.3 s backoff
    assert all(source.name in r and "reconnecting, giving up in" in r for r in reports)


def test_read_timeout_reaches_the_stream_from_the_config(server: VideoServer) -> None:
    """`source.read_timeout_s` (None = the source's default) is what the capture waits for."""
    with open_source(server.url) as default, open_source(server.url, read_timeout_s=0.7) as set_:
        assert isinstance(default, OpenCVLiveSource) and isinstance(set_, OpenCVLiveSource)
        assert default._read_timeout_s == READ_TIMEOUT_S
        assert set_._read_timeout_s == 0.7
        assert set_.read() is not None
