"""Model resolution on the real asset files: search path order, names and paths, labels, and
each way a model can be wrong (unknown, missing, truncated, corrupt, not a model, labels of the
wrong size) ending in one clear ModelError before any interpreter sees the file."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from edgecam.errors import ModelError
from edgecam.models.files import (
    model_search_path,
    read_labels,
    resolve_model,
    verify_file,
)
from edgecam.models.modelinfo import inspect_model
from tests.support.model_dirs import isolate_models

SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
MNV2 = "mobilenet_v2_1.0_224_quant.tflite"
ASSET_MODELS = {
    "mobilenet_v2": (MNV2, 1001),
    "mobilenet_v2_tf2": ("tf2_mobilenet_v2_1.0_224_ptq.tflite", 1001),
    "mobilenet_v1_0.25_128": ("mobilenet_v1_0.25_128_quant.tflite", 1001),
    "mobilenet_v1_0.5_160": ("mobilenet_v1_0.5_160_quant.tflite", 1001),
    "mobilenet_v1_0.75_192": ("mobilenet_v1_0.75_192_quant.tflite", 1001),
    "mobilenet_v1_0.25_224": ("mobilenet_v1_0.25_224_quant.tflite", 1001),
    "mobilenet_v1_0.25_224_float": ("mobilenet_v1_0.25_224_float.tflite", 1001),
    "ssd_mobilenet_v1": (SSD, 90),
}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only directories of this test are searched (not the user's cache or /var/lib)."""
    isolate_models(monkeypatch, tmp_path)


def _models_dir(tmp_path: Path, assets: Path, *files: str, labels: bool = True) -> Path:
    """A models dir holding copies of some asset models (and the labels dir beside it)."""
    d = tmp_path / "m" / "models"
    d.mkdir(parents=True)
    for f in files:
        shutil.copy(assets / "models" / f, d / f)
    if labels:
        shutil.copytree(assets / "labels", d.parent / "labels")
    return d


def test_search_path_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGECAM_MODELS_DIR", os.pathsep.join(["/opt/a", "/opt/b"]))
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edgecam:/var/lib/other")
    assert model_search_path(Path("/flag")) == [
        Path("/flag"),
        Path("/opt/a"),
        Path("/opt/b"),
        Path("/var/lib/edgecam/models"),
        tmp_path / "cache" / "edgecam" / "models",
        tmp_path / "system",
    ]


@pytest.mark.parametrize("name", sorted(ASSET_MODELS))
def test_resolve_every_asset_model_by_name(
    monkeypatch: pytest.MonkeyPatch, assets: Path, name: str
) -> None:
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(assets / "models"))
    resolved = resolve_model(name)
    file, classes = ASSET_MODELS[name]
    assert resolved.model_path == assets / "models" / file
    assert resolved.verified is True
    assert len(resolved.labels) == classes
    assert resolved.label_path is not None and resolved.label_path.parent == assets / "labels"
    # sha256-verified: the manifest describes the file, so it was not parsed (start-up cost).
    assert resolved.info is None
    assert inspect_model(resolved.model_path).num_classes == classes


def test_models_dir_argument_comes_first(assets: Path, tmp_path: Path) -> None:
    resolved = resolve_model("ssd_mobilenet_v1", models_dir=assets / "models")
    assert resolved.labels[0] == "person" and resolved.labels[89] == "toothbrush"
    assert resolved.spec.task == "detection" and resolved.spec.threshold == 0.5


def test_resolve_by_path_recognises_a_manifest_model_even_renamed(
    assets: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "camera_model.tflite"
    shutil.copy(assets / "models" / MNV2, renamed)
    resolved = resolve_model(str(renamed), labels_file=assets / "labels" / "imagenet_labels.txt")
    assert resolved.spec.name == "mobilenet_v2" and resolved.verified
    assert resolved.model_path == renamed and resolved.labels[0] == "background"


def test_unknown_local_classifier_uses_generic_names_or_a_labels_file(
    assets: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Extra bytes after the flatbuffer: still a valid model, but not the manifest's file.
    local = tmp_path / "my_classifier.tflite"
    local.write_bytes(
        (assets / "models" / "mobilenet_v1_0.25_224_float.tflite").read_bytes() + b"\0" * 64
    )
    resolved = resolve_model(str(local))
    assert not resolved.verified
    assert resolved.spec.name == "my_classifier" and resolved.spec.task == "classification"
    assert resolved.spec.input_dtype == "float32" and resolved.spec.resize == "crop"
    assert resolved.labels[:2] == ("class_0", "class_1") and len(resolved.labels) == 1001
    assert "no label file" in caplog.text
    labelled = resolve_model(str(local), labels_file=assets / "labels" / "imagenet_labels.txt")
    assert labelled.labels[1] == "tench, Tinca tinca" and labelled.spec.label_offset == 0


def test_unknown_local_detector_uses_its_embedded_labelmap(assets: Path, tmp_path: Path) -> None:
    local = tmp_path / "detector.tflite"
    local.write_bytes((assets / "models" / SSD).read_bytes() + b"\0" * 64)
    resolved = resolve_model(str(local))
    assert resolved.spec.task == "detection" and resolved.spec.resize == "stretch"
    assert resolved.label_path is None and resolved.labels[0] == "person"
    assert len(resolved.labels) == 90 and resolved.spec.label_offset == 0


def test_classic_labelmap_with_leading_placeholder_gets_offset_1(
    assets: Path, tmp_path: Path
) -> None:
    labelmap = tmp_path / "labelmap.txt"
    labelmap.write_text("???\n" + (assets / "labels" / "coco_labels.txt").read_text())
    resolved = resolve_model("ssd_mobilenet_v1", models_dir=assets / "models", labels_file=labelmap)
    assert resolved.spec.label_offset == 1
    assert resolved.labels[resolved.spec.label_offset + 0] == "person"


def test_embedded_labels_are_used_when_the_label_file_is_absent(
    assets: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = _models_dir(tmp_path, assets, MNV2, labels=False)
    resolved = resolve_model("mobilenet_v2", models_dir=d)
    assert resolved.label_path is None
    assert resolved.labels == read_labels(assets / "labels" / "imagenet_labels.txt")
    assert "embedded" in caplog.text


def test_unknown_name_suggests_the_closest(assets: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("mobilenetv2", models_dir=assets / "models")
    message = str(info.value)
    assert "unknown model 'mobilenetv2'" in message
    assert "did you mean 'mobilenet_v2'?" in message
    assert "ssd_mobilenet_v1" in message and "ssdlite_v2" in message


def test_missing_file_lists_every_directory_and_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("mobilenet_v2", models_dir=tmp_path / "empty")
    message = str(info.value)
    for d in model_search_path(tmp_path / "empty"):
        assert str(d) in message
    assert "edgecam models fetch mobilenet_v2" in message and "--from DIR" in message
    assert info.value.exit_code == 2


def test_ssdlite_without_local_file_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve_model("ssdlite_v2", models_dir=tmp_path)
    message = str(info.value)
    assert "no prebuilt int8 download" in message
    assert (
        "build it: python -m tools.convert_ssd --official ssdlite_mobilenet_v2_coco "
        "--calibration DIR_OR_VIDEO (" in message
    )
    assert "ssdlite_mobilenet_v2_coco_2018_05_09.tar.gz" in message
    assert "checkout of the edgecam source" in message and "pip install '.[tools]'" in message


def test_truncated_file(assets: Path, tmp_path: Path) -> None:
    d = _models_dir(tmp_path, assets)
    data = (assets / "models" / SSD).read_bytes()
    (d / SSD).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as info:
        resolve_model("ssd_mobilenet_v1", models_dir=d)
    assert f"{d / SSD}: {len(data) // 2} bytes, expected {len(data)} (truncated" in str(info.value)
    # Without the hash check the flatbuffer check still refuses it.
    with pytest.raises(ModelError, match=r"truncated|malformed"):
        resolve_model("ssd_mobilenet_v1", models_dir=d, verify=False)


def test_sha256_mismatch_says_expected_and_got(assets: Path, tmp_path: Path) -> None:
    d = _models_dir(tmp_path, assets)
    data = bytearray((assets / "models" / MNV2).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / MNV2).write_bytes(bytes(data))
    with pytest.raises(ModelError) as info:
        resolve_model("mobilenet_v2", models_dir=d)
    got = hashlib.sha256(bytes(data)).hexdigest()
    message = str(info.value)
    assert f"sha256 {got}, expected 7aad0c74" in message
    assert "fetch it again" in message


def test_random_bytes_under_a_model_name_or_path(tmp_path: Path) -> None:
    d = tmp_path / "models"
    d.mkdir()
    (d / MNV2).write_bytes(os.urandom(3000))
    with pytest.raises(ModelError, match="not a TFLite model"):
        resolve_model("mobilenet_v2", models_dir=d, verify=False)
    with pytest.raises(ModelError, match=r"sha256|bytes, expected"):
        resolve_model("mobilenet_v2", models_dir=d)
    with pytest.raises(ModelError, match="not a TFLite model"):
        resolve_model(str(d / MNV2))
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model(str(d / "absent.tflite"))


def test_wrong_label_count_names_both_files_and_numbers(assets: Path, tmp_path: Path) -> None:
    short = tmp_path / "imagenet_1000.txt"
    short.write_text("\n".join(read_labels(assets / "labels" / "imagenet_labels.txt")[1:-1]))
    with pytest.raises(ModelError) as info:
        resolve_model("mobilenet_v2", models_dir=assets / "models", labels_file=short)
    message = str(info.value)
    assert str(short) in message and "999 labels" in message
    assert str(assets / "models" / MNV2) in message and "1001 classes" in message


def test_manifest_label_file_of_another_model_is_refused(assets: Path, tmp_path: Path) -> None:
    d = _models_dir(tmp_path, assets, MNV2, labels=False)
    shutil.copy(assets / "labels" / "coco_labels.txt", d / "imagenet_labels.txt")
    with pytest.raises(ModelError, match=r"imagenet_labels\.txt: 661 bytes, expected 21686"):
        resolve_model("mobilenet_v2", models_dir=d)
    with pytest.raises(ModelError, match=r"has 90 labels .* has 1001 classes"):
        resolve_model("mobilenet_v2", models_dir=d, verify=False)


def test_local_manifest_registers_a_model(assets: Path, tmp_path: Path) -> None:
    # What tools/ does for a model it built: a .toml beside the file, using the shipped labels.
    d = _models_dir(tmp_path, assets)
    shutil.copy(assets / "models" / SSD, d / "my_ssd.tflite")
    digest = hashlib.sha256((d / "my_ssd.tflite").read_bytes()).hexdigest()
    (d / "local.toml").write_text(
        "[models.my_ssd]\n"
        'task = "detection"\nfile = "my_ssd.tflite"\nbuild = "made here"\n'
        f'sha256 = "{digest}"\n'
        "input = { width = 300, height = 300 }\n"
        'labels = "coco"\n'
    )
    resolved = resolve_model("my_ssd", models_dir=d)
    assert resolved.verified and resolved.labels[0] == "person"
    assert resolved.spec.source == str(d / "local.toml")


def test_local_manifest_input_must_match_the_file(assets: Path, tmp_path: Path) -> None:
    d = _models_dir(tmp_path, assets)
    shutil.copy(assets / "models" / SSD, d / "ssdlite_mobilenet_v2_coco_320_int8.tflite")
    wrong = r"input shape \[1, 300, 300, 3\], but model ssdlite_v2_320"
    with pytest.raises(ModelError, match=wrong):
        resolve_model("ssdlite_v2_320", models_dir=d)


def test_manifest_from_environment_and_its_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "extra.toml"
    bad.write_text('[models.x]\ntask = "detection"\n')
    monkeypatch.setenv("EDGECAM_MANIFEST", str(bad))
    with pytest.raises(ModelError, match=r"extra.toml: \[models.x\]: file: expected"):
        resolve_model("mobilenet_v2")


def test_verify_file(assets: Path, tmp_path: Path) -> None:
    path = assets / "labels" / "coco_labels.txt"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    verify_file(path, sha, 661)
    verify_file(path, None, None)
    with pytest.raises(ModelError, match="661 bytes, expected 660 \\(a different file\\)"):
        verify_file(path, sha, 660)
    with pytest.raises(ModelError, match="sha256"):
        verify_file(path, "0" * 64, 661)
    with pytest.raises(ModelError, match="file not found"):
        verify_file(tmp_path / "x", sha, 661)


def test_read_labels_formats(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_bytes("\ufeffbackground\r\ncat\r\n\r\n".encode())
    assert read_labels(plain) == ("background", "cat")
    coral = tmp_path / "coral.txt"
    coral.write_text("0  person\n1  bicycle\n3  motorcycle\n")
    assert read_labels(coral) == ("person", "bicycle", "n/a", "motorcycle")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ModelError, match="empty"):
        read_labels(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ModelError, match="cannot read label file"):
        read_labels(binary)
