"""`edgecam classify` / `edgecam detect` on the asset images.

Labels come from the robust list in SOURCES.md."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from edgecam.cli import main
from tests.support.huge_images import flat_jpeg, flat_png
from tests.support.paths import REPO
from tests.support.rss import Finished, run_measured


@pytest.fixture(autouse=True)
def models_env(monkeypatch: pytest.MonkeyPatch, asset_models: Path) -> None:
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(asset_models))


def _records(capsys: pytest.CaptureFixture[str]) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_classify_top1(asset_images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = ["bird.png", "burger.jpg", "coffee.png", "grace_hopper.png"]
    rc = main(["classify", *(str(asset_images / i) for i in images)])
    assert rc == 0
    top1 = [r["classification"][0]["label"] for r in _records(capsys)]
    assert top1 == ["chickadee", "cheeseburger", "espresso", "military uniform"]


def test_detect_pets_and_traffic(asset_images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["detect", str(asset_images / "pets.jpg"), str(asset_images / "traffic_0001.png")])
    assert rc == 0
    pets, traffic = _records(capsys)
    assert [d["label"] for d in pets["detections"]] == ["dog", "dog"]
    assert [d["label"] for d in traffic["detections"]] == ["car", "car"]
    box = pets["detections"][0]["box_px"]
    assert 0 <= box["xmin"] < box["xmax"] <= pets["width"]


def test_pretty_table(asset_images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["detect", "--pretty", str(asset_images / "pets.jpg")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "pets.jpg" in out and out.count("dog") == 2 and " px" in out


def test_bad_image_among_good_ones_keeps_good_results(
    asset_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    rc = main(
        ["classify", str(asset_images / "bird.png"), str(broken), str(asset_images / "coffee.png")]
    )
    captured = capsys.readouterr()
    assert rc == 2
    assert "broken.jpg" in captured.err
    labels = [json.loads(line)["classification"][0]["label"] for line in captured.out.splitlines()]
    assert labels == ["chickadee", "espresso"]


def test_pretty_output_escapes_what_a_file_name_would_do_to_the_terminal(
    asset_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "bird\x1b]0;pwned\x07\x1b[2J.png"
    image.write_bytes((asset_images / "bird.png").read_bytes())
    assert main(["classify", "--pretty", str(image)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "bird\\x1b]0;pwned\\x07\\x1b[2J.png  (512x343" in out


def test_detect_annotate_writes_a_jpeg_with_boxes(
    asset_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2
    import numpy as np

    out = tmp_path / "pets.jpg"
    rc = main(["detect", "--annotate", str(out), str(asset_images / "pets.jpg")])
    assert rc == 0
    record = _records(capsys)[0]
    assert record["annotated"] == str(out)
    drawn = cv2.imread(str(out))
    original = cv2.imread(str(asset_images / "pets.jpg"))
    assert drawn.shape == original.shape
    # Pixels change along each reported box edge, and stay (near) untouched far from any box.
    box = record["detections"][0]["box_px"]
    edge = np.abs(
        drawn[box["ymin"] + 5, box["xmin"] - 1 : box["xmin"] + 2].astype(int)
        - original[box["ymin"] + 5, box["xmin"] - 1 : box["xmin"] + 2].astype(int)
    )
    assert edge.max() > 60


def test_detect_annotate_several_images_into_a_directory(
    asset_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "detect",
            "--annotate",
            str(tmp_path / "out"),
            str(asset_images / "pets.jpg"),
            str(asset_images / "owl.jpg"),
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "owl.annotated.jpg",
        "pets.annotated.jpg",
    ]


# ---- bounded memory on any input image (issue 14, item 3) ---------------------------------

#: Headroom over the same command on a small image: far below the 2.7 GB a 30000 x 30000
#: decode needs (5.3 GB peak measured before the header check), well above allocator noise.
RSS_HEADROOM_MB = 64


def _measured(*args: str, models: Path) -> Finished:
    env = {**os.environ, "EDGECAM_MODELS_DIR": str(models)}
    return run_measured([sys.executable, "-m", "edgecam", *args], cwd=REPO, env=env)


def test_huge_jpeg_is_refused_with_bounded_peak_rss(
    tmp_path: Path, asset_images: Path, asset_models: Path
) -> None:
    """A 3.5 MB JPEG of 30000 x 30000 pixels, generated here: one line, exit 2, and the
    process's own peak RSS (from wait4) within RSS_HEADROOM_MB of classifying a small image."""
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(flat_jpeg(30000, 30000))
    baseline = _measured("classify", str(asset_images / "bird.png"), models=asset_models)
    assert baseline.returncode == 0, baseline.stderr
    refused = _measured("classify", str(huge), models=asset_models)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"edgecam: error: {huge}: 30000x30000 JPEG is 900.0 megapixels, over the limit of 50 "
        "(raise source.max_pixels (--max-pixels) if this machine has ~3 bytes of memory per "
        "pixel to spare, or scale the image down)\n"
    )
    assert refused.peak_rss_mb < baseline.peak_rss_mb + RSS_HEADROOM_MB, (
        refused.peak_rss_mb,
        baseline.peak_rss_mb,
    )


@pytest.mark.slow
def test_run_refuses_huge_images_frames_and_video_with_bounded_peak_rss(
    tmp_path: Path, asset_images: Path, asset_models: Path
) -> None:
    """The same through `run`: an image, a frames directory (the huge frame is skipped and
    counted, the good one processed) and a crafted MJPEG stream of 16000 x 16000 frames."""
    png = tmp_path / "huge.png"
    flat_png(20000, 20000, png)  # decodable: 2.5 GB peak before the fix
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "a_huge.jpg").write_bytes(flat_jpeg(30000, 30000))
    (frames / "b_bird.png").write_bytes((asset_images / "bird.png").read_bytes())
    video = tmp_path / "crafted.mjpeg"
    video.write_bytes(flat_jpeg(16000, 16000) * 2)
    small = _measured("run", "-s", str(asset_images / "bird.png"), models=asset_models)
    assert small.returncode == 0, small.stderr
    limit = small.peak_rss_mb + RSS_HEADROOM_MB
    for source, code, needle in [
        (png, 2, "20000x20000 PNG is 400.0 megapixels"),
        (frames, 0, "skipping frame"),
        (video, 2, "16000x16000 video frames are 256.0 megapixels"),
    ]:
        done = _measured("run", "-s", str(source), models=asset_models)
        assert done.returncode == code, done.stderr
        assert needle in done.stderr and "Traceback" not in done.stderr
        assert done.peak_rss_mb < limit, (source.name, done.peak_rss_mb, small.peak_rss_mb)
