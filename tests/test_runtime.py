"""Interpreter wrapper (edgecam.runtime) and the crash-safe load probe (edgecam.probe).

Runs the real back-ends installed in the venv on the real asset models: back-end discovery,
tensor metadata read from the model, zero-copy input writes, one-line errors for misuse,
and the subprocess probe with its per-file cache (a probe that would spawn a child is
detected by giving it an impossible timeout).
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest

from edgecam.errors import BackendError, ModelError
from edgecam.probe import cache_path, ensure_loadable, file_sha256, probe_backend
from edgecam.runtime import Runner, available_backends, open_runner, resolve_backend

BACKENDS = sorted(available_backends())
CLASSIFIER = "mobilenet_v2_1.0_224_quant.tflite"
SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_both_backends_are_installed_in_the_dev_venv() -> None:
    found = available_backends()
    assert found == {
        "litert": importlib.metadata.version("ai-edge-litert"),
        "tflite": importlib.metadata.version("tflite-runtime"),
    }


def test_auto_prefers_litert_and_unknown_backend_is_an_error() -> None:
    assert resolve_backend("auto")[0] == "litert"
    assert resolve_backend("tflite") == ("tflite", importlib.metadata.version("tflite-runtime"))
    with pytest.raises(BackendError, match="unknown backend 'onnx'"):
        resolve_backend("onnx")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensor_metadata_is_read_from_the_model(backend: str, asset_models: Path) -> None:
    runner = open_runner(asset_models / CLASSIFIER, backend=backend, num_threads=2)  # type: ignore[arg-type]
    assert runner.backend == backend
    assert runner.backend_version == available_backends()[backend]
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
    ssd = open_runner(asset_models / SSD, backend=backend, num_threads=1)  # type: ignore[arg-type]
    assert [o.shape for o in ssd.outputs] == [(1, 10, 4), (1, 10), (1, 10), (1,)]
    assert all(o.dtype == np.float32 and not o.quantized for o in ssd.outputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_view_writes_in_place(backend: str, asset_models: Path) -> None:
    runner = open_runner(asset_models / CLASSIFIER, backend=backend, num_threads=2)  # type: ignore[arg-type]
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_misuse_gives_one_line_errors(backend: str, asset_models: Path) -> None:
    runner = open_runner(asset_models / CLASSIFIER, backend=backend, num_threads=1)  # type: ignore[arg-type]
    with pytest.raises(
        BackendError, match=r"expects \(1, 224, 224, 3\) uint8, got \(224, 224, 3\)"
    ):
        runner.run(np.zeros((224, 224, 3), np.uint8))
    view = runner.input_view()
    with pytest.raises(BackendError, match="invoke failed") as err:
        runner.invoke()  # a live view of the input buffer blocks invoke
    assert "input_view" in str(err.value) and "\n" not in str(err.value)
    del view
    assert runner.invoke()[0].shape == (1, 1001)


def test_missing_file_and_bad_threads(asset_models: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        open_runner(tmp_path / "nope.tflite")
    with pytest.raises(BackendError, match="num_threads must be >= 1, got 0"):
        open_runner(asset_models / CLASSIFIER, num_threads=0)


def test_default_threads_and_repr(asset_models: Path) -> None:
    runner = open_runner(asset_models / CLASSIFIER)
    assert isinstance(runner, Runner)
    assert "mobilenet_v2_1.0_224_quant.tflite" in repr(runner)


def test_probe_reports_io_of_a_good_model(asset_models: Path) -> None:
    result = probe_backend(asset_models / SSD, "tflite", 2, timeout=120)
    assert result.ok and result.signal_name is None and result.error is None
    assert result.version == available_backends()["tflite"]
    assert result.invoke_ms is not None and result.invoke_ms > 0
    assert [o["shape"] for o in result.outputs] == [[1, 10, 4], [1, 10], [1, 10], [1]]
    assert result.inputs[0]["dtype"] == "uint8"


def test_probe_catches_a_segfault(asset_models: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes((asset_models / CLASSIFIER).read_bytes()[:100])
    result = probe_backend(bad, "tflite", 1, timeout=120)
    assert not result.ok
    assert result.signal_name == "SIGSEGV"


def test_probe_result_is_cached_per_file_hash(asset_models: Path) -> None:
    model = asset_models / CLASSIFIER
    version = available_backends()["tflite"]
    first = ensure_loadable(model, "tflite", version, 1, timeout=120)
    assert first.ok
    entries = json.loads(cache_path().read_text())["entries"]
    assert f"tflite|{version}|{file_sha256(model)}" in entries
    # A second probe would need a child process, which cannot start in 1 microsecond.
    again = ensure_loadable(model, "tflite", version, 1, timeout=1e-6)
    assert again.ok
    with pytest.raises(BackendError, match="timed out"):
        ensure_loadable(asset_models / SSD, "tflite", version, 1, timeout=1e-6)


def test_trusted_files_skip_the_probe(asset_models: Path) -> None:
    model = asset_models / CLASSIFIER
    runner = open_runner(model, backend="tflite", num_threads=1, trusted=True, probe_timeout=1e-6)
    assert runner.outputs[0].shape == (1, 1001)
    with pytest.raises(BackendError, match="timed out"):
        open_runner(model, backend="tflite", num_threads=1, trusted=False, probe_timeout=1e-6)
