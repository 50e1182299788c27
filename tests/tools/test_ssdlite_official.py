"""The official SSDLite path, made certain without the trained weights.

A checkpoint in the reference's exact format is written by the reference TF1 graph's own
Saver (the assets' model.ckpt.meta) with every variable randomised, packed with the release's
real small files into a tarball, served from a loopback HTTP server and converted by the
user's one command. The float model must compute what the reference graph computes on real
photos; the int8 model's distance from it is its SNR. The trained data file that matches the
real pinned index cannot be had here, so the happy path pins the random checkpoint's index
instead (everything else pinned is real); every refusal test runs against the real pins.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edgecam.cli import main as edgecam_main
from edgecam.core import preprocess
from edgecam.errors import EXIT_USAGE
from edgecam.models.files import resolve_model
from edgecam.runtime.open import open_runner
from edgecam.sources.frames import decode_image
from edgecam.types import Frame
from tools import _calibration, _ssd_source, convert_ssd
from tools._common import run_cli, sha256_file
from tools._reference_graph import ReferenceGraph, ReferenceOutputs
from tools._release import DATA, INDEX, RELEASES, Release
from tools._ssd_fidelity import (
    TFLiteOutputs,
    match_detections,
    per_class_nms_variant,
    run_tflite,
    sigmoid,
    snr_db,
)
from tools._tflite_weights import list_ops, non_int8_compute_ops

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASE = "ssdlite_mobilenet_v2_coco"
FOLDER = "ssdlite_mobilenet_v2_coco_2018_05_09"
STEM = "ssdlite_mobilenet_v2_coco_300_int8"
PHOTOS = ("cat_720p.jpg", "pets.jpg", "face.jpg", "traffic_0001.png")
SEED = 16


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serving(directory: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 for ``directory``; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _pack(folder: Path, out: Path, swap: dict[str, Path] | None = None) -> Path:
    """A release-style tarball of ``folder``; ``swap`` replaces members by other files."""
    swap = swap or {}
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for path in sorted(folder.iterdir()):
            tar.add(swap.get(path.name, path), arcname=f"{FOLDER}/{path.name}")
    return out


@pytest.fixture(scope="module")
def reference_dir(assets: Path) -> Path:
    return assets / "reference" / FOLDER


@pytest.fixture(scope="module")
def graph(reference_dir: Path) -> Iterator[ReferenceGraph]:
    with ReferenceGraph(reference_dir / "model.ckpt.meta") as g:
        yield g


@pytest.fixture(scope="module")
def random_checkpoint(
    graph: ReferenceGraph, reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The release folder: real small files, index + data written by the graph's own Saver."""
    folder = tmp_path_factory.mktemp("random") / FOLDER
    folder.mkdir()
    for name in ("checkpoint", "model.ckpt.meta", "pipeline.config"):
        shutil.copyfile(reference_dir / name, folder / name)
    graph.randomize(SEED)
    graph.save(str(folder / "model.ckpt"))
    return folder


@pytest.fixture(scope="module")
def tarball(random_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pack(random_checkpoint, tmp_path_factory.mktemp("served") / f"{FOLDER}.tar.gz")


@pytest.fixture(scope="module")
def test_pin(random_checkpoint: Path) -> Release:
    real = RELEASES[RELEASE]
    digest = sha256_file(random_checkpoint / INDEX)
    return replace(real, member_sha256={**real.member_sha256, INDEX: digest})


@dataclass(frozen=True)
class Built:
    out: Path
    stdout: str
    report: dict[str, Any]

    @property
    def int8(self) -> Path:
        return self.out / f"{STEM}.tflite"

    @property
    def float(self) -> Path:
        return self.out / "ssdlite_mobilenet_v2_coco_300_float.tflite"


@pytest.fixture(scope="module")
def official(
    tarball: Path,
    test_pin: Release,
    asset_images: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    """The user's one command, downloading from a loopback server (+ --float for the tests)."""
    out = tmp_path_factory.mktemp("models")
    cache = tmp_path_factory.mktemp("cache")
    stdout = io.StringIO()
    with _serving(tarball.parent) as url, pytest.MonkeyPatch.context() as mp:
        mp.setitem(RELEASES, RELEASE, test_pin)
        # The label file comes the way `edgecam models fetch` gets it, here from a mirror.
        mp.setenv("EDGECAM_MODEL_MIRROR", str(asset_images.parent / "models"))
        argv = [
            "--official", RELEASE, "--url", url + tarball.name, "--cache", str(cache),
            "--calibration", str(asset_images), "--calibration-count", "8",
            "--float", "--out", str(out),
        ]  # fmt: skip
        with contextlib.redirect_stdout(stdout):
            assert convert_ssd.main(argv) == 0
    report = json.loads((out / f"{STEM}_fidelity.json").read_text())
    return Built(out, stdout.getvalue(), report)


@dataclass(frozen=True)
class Measured:
    ref: ReferenceOutputs
    float: TFLiteOutputs
    float_per_class_nms: TFLiteOutputs
    int8: TFLiteOutputs


def _photos(asset_images: Path) -> npt.NDArray[np.uint8]:
    frames = [_calibration.read_rgb(asset_images / name) for name in PHOTOS]
    return _calibration.batch(frames, 300, 300, crop=False)


@pytest.fixture(scope="module")
def measured(
    official: Built,
    graph: ReferenceGraph,
    random_checkpoint: Path,
    asset_images: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Measured:
    """Reference graph (restored from the checkpoint on disk) and both models, 4 photos."""
    pixels = _photos(asset_images)
    graph.restore(str(random_checkpoint / "model.ckpt"))
    variant = per_class_nms_variant(official.float, tmp_path_factory.mktemp("nms") / "pc.tflite")
    return Measured(
        graph.run(pixels),
        run_tflite(official.float, pixels),
        run_tflite(variant, pixels),
        run_tflite(official.int8, pixels),
    )


def test_one_command_writes_model_entry_and_report(official: Built) -> None:
    assert official.int8.is_file() and official.float.is_file()
    assert (official.out / "coco_labels.txt").is_file()
    assert f"verified {FOLDER}" in official.stdout and "405 tensors" in official.stdout
    assert "is NOT the documented" in official.stdout  # a test tarball: its members decide
    resolved = resolve_model("ssdlite_v2", models_dir=official.out)
    assert resolved.verified and resolved.model_path == official.int8
    spec = resolved.spec
    assert (spec.input_width, spec.input_height, spec.input_dtype) == (300, 300, "uint8")
    assert spec.build is not None and f"--official {RELEASE}" in spec.build
    assert "official ssdlite_mobilenet_v2_coco_2018_05_09 checkpoint, verified" in spec.origin
    report = official.report
    assert report["images"] == 8 and report["checkpoint"]["tensors_crc_checked"] == 405
    assert report["postprocess"]["nms_score_threshold"] == pytest.approx(0.3)  # pipeline.config
    assert report["postprocess"]["use_regular_nms"] is False  # export_tflite_ssd_graph default
    assert report["float_vs_reference"]["box_encodings_max_abs_diff"] <= 5e-4
    assert report["int8_vs_float"]["scores_snr_db"] > 0


def test_float_raw_outputs_match_the_reference_graph(measured: Measured) -> None:
    ref, flt = measured.ref, measured.float
    box = float(np.abs(flt.box_encodings - ref.box_encodings).max())
    scores = float(np.abs(flt.scores - sigmoid(ref.class_logits)).max())
    anchors = float(np.abs(flt.anchors - ref.anchors).max())
    print(f"max |diff|: box encodings {box:.3g}, scores {scores:.3g}, anchors {anchors:.3g}")
    assert flt.anchors.shape == ref.anchors.shape == (1917, 4)
    assert np.abs(ref.box_encodings).max() > 3.0  # not a trivially small signal
    assert sigmoid(ref.class_logits).std() > 0.01
    assert box <= 5e-4 and scores <= 1.3e-4
    # The config's aspect ratio 0.3333 (not 1/3, which the old constant gave: 8.2e-5 off).
    assert anchors <= 1e-5


def test_float_detections_match_the_reference_graph(measured: Measured) -> None:
    """Top-10 per photo, same class, IoU >= 0.9, |score diff| <= 0.02, boxes clipped."""
    per_class = match_detections(measured.ref, measured.float_per_class_nms)
    default = match_detections(measured.ref, measured.float)
    print(f"per-class NMS {per_class['found']}/{per_class['of']}, default {default['found']}")
    assert per_class["of"] == 40 and per_class["found"] == 40
    assert default["found"] >= 36  # fast NMS may legitimately keep a different box


def test_int8_raw_output_snr_against_float(measured: Measured, official: Built) -> None:
    box = snr_db(measured.float.box_encodings, measured.int8.box_encodings)
    scores = snr_db(measured.float.scores, measured.int8.scores)
    print(f"int8 vs float SNR: box encodings {box:.1f} dB, scores {scores:.1f} dB")
    assert box >= 8.0 and scores >= 8.0
    assert non_int8_compute_ops(list_ops(official.int8.read_bytes())) == []


def test_edgecam_clips_boxes_wherever_it_reports_them(
    official: Built, asset_images: Path, asset_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The op leaves boxes outside [0, 1]; detect's JSON and run's lines never show them."""
    runner = open_runner(official.int8, trusted=True)
    spec = preprocess.InputSpec.from_tensor(runner.inputs[0], "stretch")
    overhanging = []
    for name in PHOTOS:  # the very input `edgecam detect` builds for the photo
        frame = Frame(decode_image(asset_images / name), 0, 0.0, 0.0, pixel_format="BGR")
        boxes, _, _, count = runner.run(preprocess.make_tensor(frame, spec)[0])
        valid = boxes[0, : int(count[0])]
        if ((valid < 0) | (valid > 1)).any():
            overhanging.append(str(asset_images / name))
    assert overhanging
    argv = ["--model", "ssdlite_v2", "--models-dir", str(official.out), "--threshold", "0"]
    assert edgecam_main(["detect", *argv, *overhanging]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == len(overhanging) and all(r["detections"] for r in records)
    for record in records:
        for det in record["detections"]:
            assert all(0.0 <= v <= 1.0 for v in det["box"].values())
            px = det["box_px"]
            assert 0 <= px["xmin"] <= px["xmax"] <= record["width"]
            assert 0 <= px["ymin"] <= px["ymax"] <= record["height"]
    run = ["run", *argv, "--source", str(asset_video), "--max-frames", "3", "--events"]
    assert edgecam_main(run) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    boxes_seen = [b for p in lines for b in _boxes(p)]
    assert boxes_seen and all(0.0 <= v <= 1.0 for b in boxes_seen for v in b.values())


def _boxes(payload: Any) -> Iterator[dict[str, float]]:
    """Every normalized box anywhere in a JSON payload."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            if key == "box" and isinstance(value, dict):
                yield value
            else:
                yield from _boxes(value)
    elif isinstance(payload, list):
        for item in payload:
            yield from _boxes(item)


def test_320_is_an_explicit_option(random_checkpoint: Path) -> None:
    args = convert_ssd.build_parser().parse_args(
        ["--checkpoint", str(random_checkpoint), "--own-checkpoint", "--size", "320"]
    )
    source = _ssd_source.resolve(args, random_checkpoint)
    detector = convert_ssd.load_weights(args, source)
    assert detector.config.size == 320 and detector.anchors.shape == (2034, 4)
    official = replace(source, release=RELEASES[RELEASE])
    assert convert_ssd._names(args, detector.config, official) == (
        "ssdlite_mobilenet_v2_coco_320_int8",
        "ssdlite_v2_320",
    )


# ---- refusals: real pins, one line each ----------------------------------------------------


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = run_cli(convert_ssd.main, [*argv, "--verify-only"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE, err
    assert "\n" not in err and "Traceback" not in err
    return err


def _release_copy(reference_dir: Path, random_checkpoint: Path, where: Path) -> Path:
    """The real release's small files with the random data file (a same-size wrong one)."""
    folder = where / FOLDER
    folder.mkdir(parents=True)
    for name in ("checkpoint", "model.ckpt.meta", "pipeline.config", INDEX):
        shutil.copyfile(reference_dir / name, folder / name)
    shutil.copyfile(random_checkpoint / DATA, folder / DATA)
    return folder


def test_altered_data_file_fails_its_crc32c(
    reference_dir: Path, random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _release_copy(reference_dir, random_checkpoint, tmp_path)
    err = _refusal(["--tarball", str(_pack(folder, tmp_path / "altered.tar.gz"))], capsys)
    assert f"{DATA}: tensor " in err and "does not match the index" in err
    assert "Checksum does not match" in err


def test_truncated_data_file_is_refused(
    reference_dir: Path, random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _release_copy(reference_dir, random_checkpoint, tmp_path)
    with (folder / DATA).open("r+b") as f:
        f.truncate(9_000_000)
    err = _refusal(["--tarball", str(_pack(folder, tmp_path / "short.tar.gz"))], capsys)
    assert f"{DATA}: 9000000 bytes, the {FOLDER} release's is 18205188" in err


def test_a_different_model_is_refused(
    tarball: Path, random_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refusal(["--tarball", str(tarball)], capsys)
    assert f"{INDEX}: sha256 {sha256_file(random_checkpoint / INDEX)} is not the {FOLDER}" in err
    err = _refusal(["--checkpoint", str(random_checkpoint)], capsys)
    assert "is not the index of a pinned official release" in err and "--own-checkpoint" in err


def test_another_release_is_refused(
    reference_dir: Path, random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _release_copy(reference_dir, random_checkpoint, tmp_path)
    config = folder / "pipeline.config"
    config.write_text(config.read_text().replace("iou_threshold: 0.6", "iou_threshold: 0.5"))
    err = _refusal(["--checkpoint", str(folder)], capsys)
    assert "pipeline.config: sha256 " in err and "another release" in err


def test_truncated_tarball_is_refused(
    tarball: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / tarball.name
    cut.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    err = _refusal(["--tarball", str(cut)], capsys)
    assert f"{cut}: not a complete .tar.gz" in err


def test_own_checkpoint_is_still_crc_checked(
    random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = tmp_path / "own"
    shutil.copytree(random_checkpoint, own)
    assert run_cli(convert_ssd.main, ["--checkpoint", str(own), "--own-checkpoint",
                                      "--verify-only"]) == 0  # fmt: skip
    assert "own checkpoint, 405 tensors match their CRC32C" in capsys.readouterr().out
    with (own / DATA).open("r+b") as f:
        f.truncate(1_000_000)
    err = _refusal(["--checkpoint", str(own), "--own-checkpoint"], capsys)
    assert "does not match the index" in err


def test_tarball_fetched_elsewhere_verifies(
    tarball: Path, test_pin: Release, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setitem(RELEASES, RELEASE, test_pin)
    assert run_cli(convert_ssd.main, ["--tarball", str(tarball), "--verify-only"]) == 0
    assert f"verified {FOLDER}" in capsys.readouterr().out


def test_plain_http_to_another_host_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://download.tensorflow.org/models/object_detection/x.tar.gz"
    err = _refusal(["--official", RELEASE, "--url", url, "--cache", str(tmp_path)], capsys)
    assert f"refusing to download {url}" in err


def test_without_network_says_so_in_one_line(asset_images: Path, tmp_path: Path) -> None:
    """The real CLI, pointed at a loopback port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    calibration = tmp_path / "shots"
    calibration.mkdir()
    shutil.copyfile(asset_images / "cat_720p.jpg", calibration / "cat.jpg")
    url = f"http://127.0.0.1:{port}/{FOLDER}.tar.gz"
    cmd = [sys.executable, "-m", "tools.convert_ssd", "--official", RELEASE, "--url", url]
    cmd += ["--cache", str(tmp_path / "cache"), "--calibration", str(calibration)]
    done = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == EXIT_USAGE
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot download {url}" in lines[0] and "no network?" in lines[0]
    assert "--tarball FILE" in lines[0]
    assert not (tmp_path / "cache" / f"{FOLDER}.tar.gz").exists()
