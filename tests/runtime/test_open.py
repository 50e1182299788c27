"""`open_runner`'s policy (runtime/open.py): a named runtime probes an unverified file first
(tflite-runtime crashes on corrupt files), a verified one loads directly; bad arguments are
one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.errors import ModelError, TFLiteRuntimeError
from edgecam.runtime.interpreter import Runner
from edgecam.runtime.open import open_runner

CLASSIFIER = "mobilenet_v2_1.0_224_quant.tflite"
SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def test_missing_file_and_bad_threads(asset_models: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        open_runner(tmp_path / "nope.tflite")
    with pytest.raises(TFLiteRuntimeError, match="num_threads must be >= 1, got 0"):
        open_runner(asset_models / CLASSIFIER, num_threads=0)


def test_default_threads_and_repr(asset_models: Path) -> None:
    runner = open_runner(asset_models / CLASSIFIER)
    assert isinstance(runner, Runner)
    assert "mobilenet_v2_1.0_224_quant.tflite" in repr(runner)


def test_trusted_files_skip_the_probe(asset_models: Path) -> None:
    model = asset_models / CLASSIFIER
    runner = open_runner(model, runtime="tflite", num_threads=1, trusted=True, probe_timeout=1e-6)
    assert runner.outputs[0].shape == (1, 1001)
    with pytest.raises(TFLiteRuntimeError, match="timed out"):
        open_runner(model, runtime="tflite", num_threads=1, trusted=False, probe_timeout=1e-6)
