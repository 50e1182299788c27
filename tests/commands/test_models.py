"""`edgecam models list | info | fetch | verify` through the real CLI entry point, on copies of
the asset models; exit status 0 when all is well, 2 with a one-line error otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecam.cli import main
from tests.support.model_dirs import isolate_models
from tests.support.paths import REPO

SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
MNV2 = "mobilenet_v2_1.0_224_quant.tflite"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_models(monkeypatch, tmp_path)


def _copy(assets: Path, dest: Path, *files: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(assets / "models" / f, dest / f)
    shutil.copytree(assets / "labels", dest / "labels", dirs_exist_ok=True)
    return dest


def test_list_table_and_json(
    monkeypatch: pytest.MonkeyPatch, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(assets / "models"))
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "present" in lines["mobilenet_v2*"] and str(assets / "models" / MNV2) in out
    assert "missing (build)" in lines["ssdlite_v2"]
    assert "300x300 uint8" in lines["ssd_mobilenet_v1*"]
    assert main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == 10
    assert rows["ssd_mobilenet_v1"]["status"] == "present" and rows["ssd_mobilenet_v1"]["primary"]
    assert rows["ssdlite_v2"]["path"] is None


def test_list_marks_a_wrong_sized_file_corrupt(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "models"
    d.mkdir()
    (d / MNV2).write_bytes(b"TFL3")
    assert main(["models", "list", "--models-dir", str(d), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mobilenet_v2"]["status"] == "corrupt"
    assert rows["ssd_mobilenet_v1"]["status"] == "missing"


def test_info_shows_manifest_and_file_contents(
    assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "info", "ssd_mobilenet_v1", "--models-dir", str(assets / "models")]) == 0
    out = capsys.readouterr().out
    assert "(sha256 verified)" in out and "arxiv.org/abs/1512.02325" in out
    assert "num_classes=90" in out and "max_detections=10" in out
    assert "TFLite_Detection_PostProcess:3 [1] float32 [count]" in out
    assert "coco_labels.txt (90 labels)" in out
    argv = ["models", "info", "mobilenet_v2", "--json", "--models-dir", str(assets / "models")]
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "ok" and record["verified"] is True
    assert record["spec"]["accuracy"]["value"] == 70.8
    assert record["modelinfo"]["outputs"][0]["shape"] == [1, 1001]
    assert record["labels"]["count"] == 1001


def test_info_on_a_missing_model_and_on_a_path(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "info", "ssdlite_v2", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "none (no prebuilt download)" in out
    command = "python -m tools.convert_ssd --official ssdlite_mobilenet_v2_coco"
    assert f"build:          {command} --calibration DIR_OR_VIDEO\n" in out
    assert f"not found in {tmp_path}" in out
    assert main(["models", "info", str(assets / "models" / SSD)]) == 0
    assert "name:           ssd_mobilenet_v1" in capsys.readouterr().out


def test_info_on_a_corrupt_file_reports_and_exits_2(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _copy(assets, tmp_path / "models")
    data = (assets / "models" / MNV2).read_bytes()
    (d / MNV2).write_bytes(data[:-10])
    assert main(["models", "info", "mobilenet_v2", "--models-dir", str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected 3610798 (truncated" in err[0]


def test_unknown_name_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "info", "mobilenet_v9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'mobilenet_v2'?" in err[0]


def test_fetch_from_mirror_then_present(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "dest"
    argv = [
        "models",
        "fetch",
        "mobilenet_v2",
        "--from",
        str(assets / "models"),
        "--dest",
        str(dest),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"mobilenet_v2: copied {dest / MNV2}" in out
    assert f"mobilenet_v2: labels copied {dest / 'imagenet_labels.txt'}" in out
    assert main(argv) == 0
    assert "mobilenet_v2: present" in capsys.readouterr().out


def test_fetch_all_from_mirror_skips_the_model_to_build(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "dest"
    assert (
        main(["models", "fetch", "--all", "--from", str(assets / "models"), "--dest", str(dest)])
        == 0
    )
    out = capsys.readouterr().out
    assert out.count(": copied ") == 8
    assert "ssdlite_v2: skipped, no prebuilt download" in out
    assert len(list(dest.glob("*.tflite"))) == 8
    assert main(["models", "verify", "--models-dir", str(dest)]) == 0
    assert capsys.readouterr().out.count("sha256 ok") == 8


def test_fetch_needs_a_name_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "fetch"]) == 2
    assert "give one model NAME or --all" in capsys.readouterr().err
    assert main(["models", "fetch", "mobilenet_v2", "--all"]) == 2


def test_models_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["models"])
    assert info.value.code == 2


def test_verify_reports_each_bad_file_and_exits_2(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _copy(assets, tmp_path / "models", MNV2, SSD)
    data = bytearray((d / SSD).read_bytes())
    data[100_000] ^= 0xFF
    (d / SSD).write_bytes(bytes(data))
    assert main(["models", "verify", "--models-dir", str(d)]) == 2
    captured = capsys.readouterr()
    assert f"ok  mobilenet_v2  {d / MNV2}" in captured.out
    assert f"ssd_mobilenet_v1: {d / SSD}: sha256" in captured.err
    assert "1 of 2 models failed" in captured.err
    assert main(["models", "verify", "mobilenet_v2", "--models-dir", str(d)]) == 0


def test_verify_a_missing_model_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "verify", "ssd_mobilenet_v1", "--models-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "edgecam models fetch ssd_mobilenet_v1" in err and "Traceback" not in err


def test_verify_subprocess_exit_code_without_traceback(assets: Path, tmp_path: Path) -> None:
    d = _copy(assets, tmp_path / "models", MNV2)
    (d / MNV2).write_bytes(os.urandom(5000))
    env = dict(os.environ)
    env.update(
        EDGECAM_MODELS_DIR=str(d), XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(REPO)
    )
    for var in ("EDGECAM_MODEL_MIRROR", "EDGECAM_MANIFEST", "STATE_DIRECTORY"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "edgecam", "models", "verify"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"mobilenet_v2: {d / MNV2}: 5000 bytes, expected 3610798" in proc.stderr
