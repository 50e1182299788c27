"""The interpreter wrapper (runtime/interpreter.py) on the real runtimes and asset models:
runtime discovery, tensor metadata read from the model, zero-copy input writes, one-line
errors for misuse."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

from edgecam.errors import TFLiteRuntimeError
from edgecam.runtime.interpreter import available_runtimes, resolve_runtime
from edgecam.runtime.open import open_runner

RUNTIMES = sorted(available_runtimes())
CLASSIFIER = "mobilenet_v2_1.0_224_quant.tflite"
SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def test_both_runtimes_are_installed_in_the_dev_venv() -> None:
    found = available_runtimes()
    assert found == {
        "litert": importlib.metadata.version("ai-edge-litert"),
        "tflite": importlib.metadata.version("tflite-runtime"),
    }


def test_auto_prefers_litert_and_unknown_runtime_is_an_error() -> None:
    assert resolve_runtime("auto")[0] == "litert"
    assert resolve_runtime("tflite") == ("tflite", importlib.metadata.version("tflite-runtime"))
    with pytest.raises(TFLiteRuntimeError, match="unknown runtime 'onnx'"):
        resolve_runtime("onnx")  # type: ignore[arg-type]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_tensor_metadata_is_read_from_the_model(runtime: str, asset_models: Path) -> None:
    runner = open_runner(asset_models / CLASSIFIER, runtime=runtime, num_threads=2)  # type: ignore[arg-type]
    assert runner.runtime == runtime
    assert runner.runtime_version == available_runtimes()[runtime]
    (inp,) = runner.inputs
    assert (inp.name, inp.shape, inp.dtype) == ("input", (1, 224, 224, 3), np.dtype(np.uint8))
    assert (inp.scale, inp.zero_point) == (0.0078125, 128)
    (out,) = runner.outputs
    assert (out.shape, out.dtype, out.scale, out.zero_point) == (
        (1, 1001),
        np.dtype(np.uint8),
        0.00390625,
        0,
    )
    ssd = open_runner(asset_models / SSD, runtime=runtime, num_threads=1)  # type: ignore[arg-type]
    assert [o.shape for o in ssd.outputs] == [(1, 10, 4), (1, 10), (1, 10), (1,)]
    assert all(o.dtype == np.float32 and not o.quantized for o in ssd.outputs)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_input_view_writes_in_place(runtime: str, asset_models: Path) -> None:
    runner = open_runner(asset_models / CLASSIFIER, runtime=runtime, num_threads=2)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    tensor = rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    view = runner.input_view()
    assert view.shape == (1, 224, 224, 3) and view.flags.writeable
    view[...] = tensor
    del view
    via_view = runner.invoke()
    assert runner.last_invoke_ms > 0
    via_copy = runner.run(tensor)
    assert len(via_view) == 1 and via_view[0].shape == (1, 1001)
    np.testing.assert_array_equal(via_view[0], via_copy[0])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_misuse_gives_one_line_errors(runtime: str, asset_models: Path) -> None:
    runner = open_runner(asset_models / CLASSIFIER, runtime=runtime, num_threads=1)  # type: ignore[arg-type]
    with pytest.raises(
        TFLiteRuntimeError, match=r"expects \(1, 224, 224, 3\) uint8, got \(224, 224, 3\)"
    ):
        runner.run(np.zeros((224, 224, 3), np.uint8))
    view = runner.input_view()
    with pytest.raises(TFLiteRuntimeError, match="invoke failed") as err:
        runner.invoke()  # a live view of the input buffer blocks invoke
    assert "input_view" in str(err.value) and "\n" not in str(err.value)
    del view
    assert runner.invoke()[0].shape == (1, 1001)
