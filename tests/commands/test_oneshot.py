"""`edgecam classify` / `edgecam detect` on the asset images.

Labels come from the robust list in SOURCES.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecam.cli import main


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
