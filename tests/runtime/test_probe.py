"""The crash-safe load probe (runtime/probe.py): a child process loads the model, so a runtime
that segfaults on a corrupt file kills only the child; successes are remembered per file hash
(a probe that would spawn a child is detected by giving it an impossible timeout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.errors import TFLiteRuntimeError
from edgecam.runtime.cache import ChoiceCache
from edgecam.runtime.interpreter import available_runtimes
from edgecam.runtime.probe import ensure_loadable, file_sha256, probe_runtime

CLASSIFIER = "mobilenet_v2_1.0_224_quant.tflite"
SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def test_probe_reports_io_of_a_good_model(asset_models: Path) -> None:
    result = probe_runtime(asset_models / SSD, "tflite", 2, timeout=120)
    assert result.ok and result.signal_name is None and result.error is None
    assert result.version == available_runtimes()["tflite"]
    assert result.invoke_ms is not None and result.invoke_ms > 0
    assert [o["shape"] for o in result.outputs] == [[1, 10, 4], [1, 10], [1, 10], [1]]
    assert result.inputs[0]["dtype"] == "uint8"


def test_probe_catches_a_segfault(asset_models: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes((asset_models / CLASSIFIER).read_bytes()[:100])
    result = probe_runtime(bad, "tflite", 1, timeout=120)
    assert not result.ok
    assert result.signal_name == "SIGSEGV"


def test_probe_result_is_cached_per_file_hash(asset_models: Path) -> None:
    model = asset_models / CLASSIFIER
    version = available_runtimes()["tflite"]
    first = ensure_loadable(model, "tflite", version, 1, timeout=120)
    assert first.ok
    entries = ChoiceCache().entries("loadable")
    assert f"tflite|{version}|{file_sha256(model)}" in entries
    # A second probe would need a child process, which cannot start in 1 microsecond.
    again = ensure_loadable(model, "tflite", version, 1, timeout=1e-6)
    assert again.ok
    with pytest.raises(TFLiteRuntimeError, match="timed out"):
        ensure_loadable(asset_models / SSD, "tflite", version, 1, timeout=1e-6)
