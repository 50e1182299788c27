"""Runtime auto-selection (edgecam.runtime.select): probe each runtime in a child, skip the
ones that crash, hang or return outputs the model does not declare, cache the choice.

Probes are real child processes running the real runtimes on the asset models. To make one
runtime fail on this x86 machine, a prober routes it to a real failure: tflite-runtime on a
truncated file (a real SIGSEGV), a timeout too short for a real load (a real hang as far as
the parent can tell), or a different model (real outputs that do not match the declared ones).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edgecam.errors import ModelError, TFLiteRuntimeError
from edgecam.runtime.cache import CACHE_NAME, ChoiceCache
from edgecam.runtime.interpreter import available_runtimes
from edgecam.runtime.probe import ProbeResult, file_sha256, probe_runtime
from edgecam.runtime.select import (
    Attempt,
    cache_key,
    judge,
    probe_runtimes,
    record_choice,
    select_runtime,
)

CLASSIFIER = "mobilenet_v2_1.0_224_quant.tflite"
SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
INSTALLED = available_runtimes()


def test_both_runtimes_are_installed_here() -> None:
    # The selection tests below need both; .ci/run installs edgecam[tflite].
    assert set(INSTALLED) == {"litert", "tflite"}


def test_auto_picks_litert_first_and_caches_the_choice(asset_models: Path, tmp_path: Path) -> None:
    model = asset_models / CLASSIFIER
    first = select_runtime(model, num_threads=1, state_dir=tmp_path, timeout=120)
    assert (first.runtime, first.version, first.cached) == ("litert", INSTALLED["litert"], False)
    assert [a.status for a in first.attempts] == ["ok"]  # tflite not probed: litert worked
    assert first.attempts[0].invoke_ms is not None and first.attempts[0].invoke_ms > 0
    entries = ChoiceCache(tmp_path).entries("choice")
    key = cache_key(file_sha256(model), INSTALLED, ("litert", "tflite"))
    assert entries[key]["runtime"] == "litert" and entries[key]["model"] == str(model)
    # A cached answer spawns nothing: a probe could not even start within 1 microsecond.
    again = select_runtime(model, num_threads=1, state_dir=tmp_path, timeout=1e-6)
    assert (again.runtime, again.cached) == ("litert", True)
    assert again.attempts == first.attempts


def test_a_crashing_runtime_is_skipped_with_a_warning(
    asset_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = asset_models / CLASSIFIER
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(model.read_bytes()[:100])  # tflite-runtime segfaults on it

    def prober(path: Path, runtime: str, threads: int, timeout: float, **kw: Any) -> ProbeResult:
        return probe_runtime(
            truncated if runtime == "tflite" else path, runtime, threads, timeout, **kw
        )

    caplog.set_level(logging.WARNING, logger="edgecam.runtime.select")
    chosen = select_runtime(
        model,
        num_threads=1,
        candidates=("tflite", "litert"),
        state_dir=tmp_path,
        timeout=120,
        prober=prober,
    )
    assert chosen.runtime == "litert"
    crashed, ok = chosen.attempts
    assert (crashed.runtime, crashed.status, crashed.signal_name) == (
        "tflite",
        "crashed",
        "SIGSEGV",
    )
    assert crashed.version == INSTALLED["tflite"]  # filled in although the child died
    assert ok.status == "ok"
    assert f"skipping tflite-runtime {INSTALLED['tflite']}: crashed with SIGSEGV" in caplog.text
    cached = ChoiceCache(tmp_path).entries("choice")
    assert [a["status"] for a in next(iter(cached.values()))["attempts"]] == ["crashed", "ok"]


def test_a_hanging_runtime_is_skipped(asset_models: Path, tmp_path: Path) -> None:
    def prober(path: Path, runtime: str, threads: int, timeout: float, **kw: Any) -> ProbeResult:
        return probe_runtime(path, runtime, threads, 0.05 if runtime == "litert" else timeout, **kw)

    chosen = select_runtime(
        asset_models / CLASSIFIER, num_threads=1, state_dir=tmp_path, timeout=120, prober=prober
    )
    assert chosen.runtime == "tflite"
    hung = chosen.attempts[0]
    assert (hung.runtime, hung.status) == ("litert", "hang")
    assert hung.detail == "hung: timed out after 0.05 s"


def test_outputs_that_differ_from_the_declared_ones_are_rejected(asset_models: Path) -> None:
    # The probe runs the classifier while the SSD file's four outputs are expected.
    def prober(path: Path, runtime: str, threads: int, timeout: float, **kw: Any) -> ProbeResult:
        return probe_runtime(asset_models / CLASSIFIER, runtime, threads, timeout, **kw)

    attempts = probe_runtimes(
        asset_models / SSD, ["litert"], num_threads=1, timeout=120, prober=prober
    )
    assert attempts[0].status == "wrong-output"
    assert attempts[0].detail == "returned 1 outputs, the model declares 4"


@pytest.mark.parametrize(
    ("results", "expected", "status", "detail"),
    [
        # the SSD's declared outputs, returned as declared
        (
            [{"shape": [1, 10, 4], "dtype": "float32"}, {"shape": [1], "dtype": "float32"}],
            [((1, 10, 4), "float32"), ((1,), "float32")],
            "ok",
            "ok (3.0 ms first invoke)",
        ),
        # a runtime that mangles a shape
        (
            [{"shape": [1, 1000], "dtype": "uint8"}],
            [((1, 1001), "uint8")],
            "wrong-output",
            "output 0 has shape (1, 1000), the model declares (1, 1001)",
        ),
        # ... or a dtype
        (
            [{"shape": [1, 1001], "dtype": "int8"}],
            [((1, 1001), "uint8")],
            "wrong-output",
            "output 0 has dtype int8, the model declares uint8",
        ),
        # NaN out of zeros in: broken kernels
        (
            [{"shape": [1, 2], "dtype": "float32", "nan": True}],
            [((1, 2), "float32")],
            "wrong-output",
            "output 0 contains NaN after invoking on zeros",
        ),
        # a shape the file leaves unset (some postprocess outputs) is not compared
        (
            [{"shape": [1, 25], "dtype": "float32"}],
            [((), "float32")],
            "ok",
            "ok (3.0 ms first invoke)",
        ),
    ],
)
def test_judge_compares_outputs_with_the_file(
    results: list[dict[str, Any]], expected: Any, status: str, detail: str
) -> None:
    probe = ProbeResult(True, "litert", "2.3.0", invoke_ms=3.0, results=tuple(results))
    attempt = judge(probe, expected)
    assert (attempt.status, attempt.detail) == (status, detail)


def test_judge_names_signals_hangs_and_errors() -> None:
    crash = judge(ProbeResult(False, "litert", None, signal_name="SIGILL", error="killed"), None)
    assert (crash.status, crash.detail, crash.signal_name) == (
        "crashed",
        "crashed with SIGILL",
        "SIGILL",
    )
    hang = judge(
        ProbeResult(False, "tflite", None, error="timed out after 9 s", timed_out=True), None
    )
    assert (hang.status, hang.describe()) == ("hang", "tflite-runtime: hung: timed out after 9 s")
    err = judge(
        ProbeResult(
            False, "tflite", "2.14.0", error="cannot import", error_kind="TFLiteRuntimeError"
        ),
        None,
    )
    assert (err.status, err.error_kind) == ("error", "TFLiteRuntimeError")


def test_a_runtime_that_is_not_installed_is_reported_missing(asset_models: Path) -> None:
    attempts = probe_runtimes(
        asset_models / CLASSIFIER,
        ["litert", "tflite"],
        num_threads=1,
        installed={"tflite": INSTALLED["tflite"]},
        timeout=120,
    )
    assert [(a.runtime, a.status) for a in attempts] == [("litert", "missing"), ("tflite", "ok")]


def test_no_working_runtime_is_a_backend_error_listing_each(
    asset_models: Path, tmp_path: Path
) -> None:
    def prober(path: Path, runtime: str, threads: int, timeout: float, **kw: Any) -> ProbeResult:
        return probe_runtime(path, runtime, threads, 0.05, **kw)

    with pytest.raises(TFLiteRuntimeError) as info:
        select_runtime(asset_models / CLASSIFIER, num_threads=1, state_dir=tmp_path, prober=prober)
    message = str(info.value)
    assert "no TFLite runtime works on this machine" in message
    assert "ai-edge-litert" in message and "tflite-runtime" in message and "hung" in message
    assert "edgecam doctor" in message
    assert not (tmp_path / CACHE_NAME).exists()  # nothing to remember


def test_a_file_that_is_not_a_model_is_a_model_error_before_any_probe(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.tflite"
    bogus.write_text("not a flatbuffer at all")
    with pytest.raises(ModelError, match="not a TFLite model"):
        select_runtime(bogus, num_threads=1, state_dir=tmp_path, timeout=1e-6)


def test_cache_is_keyed_by_runtime_versions(asset_models: Path, tmp_path: Path) -> None:
    model = asset_models / CLASSIFIER
    key = cache_key(file_sha256(model), {**INSTALLED, "litert": "0.0.1"}, ("litert", "tflite"))
    stale = {"schema": 2, "sections": {"choice": {key: {"runtime": "litert", "version": "0.0.1"}}}}
    (tmp_path / CACHE_NAME).write_text(json.dumps(stale))
    chosen = select_runtime(model, num_threads=1, state_dir=tmp_path, timeout=120)
    assert (chosen.cached, chosen.version) == (False, INSTALLED["litert"])  # probed afresh
    assert len(ChoiceCache(tmp_path).entries("choice")) == 2


def test_unreadable_cache_and_unwritable_state_dir_only_cost_a_probe(
    asset_models: Path, tmp_path: Path
) -> None:
    (tmp_path / CACHE_NAME).write_text("{ half a json")
    assert (
        select_runtime(
            asset_models / CLASSIFIER, num_threads=1, state_dir=tmp_path, timeout=120
        ).runtime
        == "litert"
    )
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    chosen = select_runtime(
        asset_models / CLASSIFIER, num_threads=1, state_dir=not_a_dir, timeout=120
    )
    assert chosen.runtime == "litert" and not chosen.cached


def test_record_choice_primes_the_cache_from_doctor_probes(
    asset_models: Path, tmp_path: Path
) -> None:
    model = asset_models / SSD
    attempts = [
        Attempt("litert", INSTALLED["litert"], "crashed", "crashed with SIGSEGV", "SIGSEGV"),
        Attempt("tflite", INSTALLED["tflite"], "ok", "ok (9.0 ms first invoke)"),
    ]
    assert record_choice(model, attempts, state_dir=tmp_path) is not None
    chosen = select_runtime(model, num_threads=1, state_dir=tmp_path, timeout=1e-6)
    assert (chosen.runtime, chosen.cached) == ("tflite", True)
    assert record_choice(model, attempts[:1], state_dir=tmp_path) is None
