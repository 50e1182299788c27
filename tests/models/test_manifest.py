"""The shipped manifest matches the real asset files, and bad manifests are refused with errors
that name the manifest file, the entry and the field."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgecam.errors import ModelError
from edgecam.models.manifest import Manifest, is_allowed_url, parse_manifest
from tests.support.paths import REPO

SHIPPED = REPO / "models" / "manifest.toml"


def _shipped() -> Manifest:
    return parse_manifest(SHIPPED.read_text(encoding="utf-8"), str(SHIPPED))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_manifest_has_the_expected_models() -> None:
    manifest = _shipped()
    assert set(manifest.names()) == {
        "mobilenet_v2",
        "mobilenet_v2_tf2",
        "mobilenet_v1_0.25_128",
        "mobilenet_v1_0.5_160",
        "mobilenet_v1_0.75_192",
        "mobilenet_v1_0.25_224",
        "mobilenet_v1_0.25_224_float",
        "ssd_mobilenet_v1",
        "ssdlite_v2",
        "ssdlite_v2_320",
    }
    primary = {n for n, s in manifest.models.items() if s.primary}
    assert primary == {"mobilenet_v2", "ssd_mobilenet_v1"}
    assert manifest.models["ssd_mobilenet_v1"].resize == "stretch"
    assert manifest.models["mobilenet_v2"].resize == "crop"
    assert manifest.models["mobilenet_v1_0.25_224_float"].input_dtype == "float32"


def test_every_asset_model_and_label_file_matches_its_entry(assets: Path) -> None:
    manifest = _shipped()
    by_file = {s.file: s for s in manifest.models.values()}
    model_files = sorted((assets / "models").glob("*.tflite"))
    assert len(model_files) == 8
    for path in model_files:
        spec = by_file[path.name]
        assert spec.size == path.stat().st_size, path.name
        assert spec.sha256 == _sha(path), path.name
        assert spec.url is not None and spec.url.startswith("https://raw.githubusercontent.com/")
    for label in manifest.labels.values():
        path = assets / "labels" / label.file
        assert (label.size, label.sha256) == (path.stat().st_size, _sha(path))


def test_ssdlite_entry_is_a_build_recipe_not_a_download() -> None:
    spec = _shipped().models["ssdlite_v2"]
    assert spec.task == "detection" and spec.url is None and spec.sha256 is None
    # The checkpoint's pipeline.config: 300x300 (1917 anchors), not the paper's 320.
    assert (spec.input_width, spec.input_height) == (300, 300)
    assert spec.checkpoint_url == (
        "https://storage.googleapis.com/download.tensorflow.org/models/object_detection/"
        "ssdlite_mobilenet_v2_coco_2018_05_09.tar.gz"
    )
    official = "python -m tools.convert_ssd --official ssdlite_mobilenet_v2_coco"
    assert spec.build == f"{official} --calibration DIR_OR_VIDEO"
    assert spec.paper and spec.paper.arxiv == "1801.04381"
    variant = _shipped().models["ssdlite_v2_320"]
    assert (variant.input_width, variant.input_height) == (320, 320)
    assert variant.build == f"{official} --size 320 --calibration DIR_OR_VIDEO"


def test_label_offsets_match_the_label_files() -> None:
    manifest = _shipped()
    for spec in manifest.models.values():
        assert spec.labels is not None
        assert spec.label_offset == 0
        assert spec.labels.name == ("imagenet" if spec.task == "classification" else "coco")


GOOD = """
[labels.coco]
file = "coco_labels.txt"

[models.m]
task = "detection"
file = "m.tflite"
url = "https://example.org/m.tflite"
input = { width = 300, height = 300 }
labels = "coco"
"""


def test_minimal_entry_gets_defaults() -> None:
    spec = parse_manifest(GOOD, "good.toml").models["m"]
    assert (spec.input_dtype, spec.pixel_format, spec.resize) == ("uint8", "RGB", "stretch")
    assert spec.threshold == 0.5 and spec.source == "good.toml"


# (replacement applied to GOOD, text expected in the error) — one case per kind of mistake.
BAD_CASES = [
    # misspelt key
    (('labels = "coco"', 'labels = "coco"\ntreshold = 0.5'), "unknown key 'treshold'"),
    # wrong type
    (('file = "m.tflite"', 'file = "m.tflite"\nsize = "big"'), "size: expected a size in bytes"),
    # TOML boolean where a number is meant
    (('file = "m.tflite"', 'file = "m.tflite"\ntop_k = true'), "top_k: expected"),
    # closed set
    (('task = "detection"', 'task = "segmentation"'), "task: expected classification | detection"),
    (('labels = "coco"', 'labels = "coco"\nresize = "squash"'), "resize: expected crop"),
    # malformed hash
    (('file = "m.tflite"', 'file = "m.tflite"\nsha256 = "abc"'), "sha256: expected 64"),
    # plain http to the internet
    (("https://example.org", "http://example.org"), "url: expected an https:// URL"),
    # path instead of a file name
    (('file = "m.tflite"', 'file = "../m.tflite"'), "file: expected a plain file name"),
    # reference to a label table that does not exist
    (('labels = "coco"', 'labels = "imagenet"'), "labels: expected one of the [labels.*] tables"),
    # out of range
    (
        ('labels = "coco"', 'labels = "coco"\nthreshold = 1.5'),
        "threshold: expected a number in 0..1",
    ),
    # required field missing
    (('file = "m.tflite"\n', ""), "file: expected a file name, got 'nothing (missing)'"),
    # nested table
    (("width = 300,", 'width = "300",'), "input: width: expected pixels"),
    # neither a download nor build instructions
    (('url = "https://example.org/m.tflite"\n', ""), "url: expected a download URL"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_CASES)
def test_bad_entries_name_file_entry_and_field(change: tuple[str, str], expected: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ModelError) as info:
        parse_manifest(text, "/etc/edgecam/local.toml")
    message = str(info.value)
    assert message.startswith("/etc/edgecam/local.toml: ")
    assert expected in message
    assert "\n" not in message


def test_bad_label_table_is_named() -> None:
    with pytest.raises(ModelError, match=r"x.toml: \[labels.coco\]: size: expected"):
        parse_manifest(
            GOOD.replace('file = "coco_labels.txt"', 'file = "c.txt"\nsize = -1'), "x.toml"
        )


def test_toml_syntax_error_and_schema_version() -> None:
    with pytest.raises(ModelError, match=r"x\.toml: not valid TOML"):
        parse_manifest("[models.m\n", "x.toml")
    with pytest.raises(ModelError, match="schema: expected 1"):
        parse_manifest("schema = 2\n" + GOOD, "x.toml")
    with pytest.raises(ModelError, match="top level: unknown key 'modles'"):
        parse_manifest("[modles.m]\n", "x.toml")


def test_later_manifest_overrides_and_reuses_labels() -> None:
    base = _shipped()
    local = """
[models.ssdlite_v2]
task = "detection"
file = "ssdlite_local.tflite"
sha256 = "%s"
build = "made here"
input = { width = 320, height = 320, dtype = "int8" }
labels = "coco"
""" % ("ab" * 32)
    merged = parse_manifest(local, "/models/local.toml", base)
    spec = merged.models["ssdlite_v2"]
    assert spec.file == "ssdlite_local.tflite" and spec.input_dtype == "int8"
    assert spec.labels is not None and spec.labels.sha256 == base.labels["coco"].sha256
    assert spec.source == "/models/local.toml"
    assert merged.models["mobilenet_v2"] == base.models["mobilenet_v2"]
    assert merged.sources == (str(SHIPPED), "/models/local.toml")


def test_loopback_http_is_accepted_by_the_manifest_but_not_by_default() -> None:
    parse_manifest(GOOD.replace("https://example.org", "http://127.0.0.1:8000"), "x.toml")
    assert is_allowed_url("https://example.org/a", loopback_http=False)
    assert not is_allowed_url("http://127.0.0.1:8000/a", loopback_http=False)
    assert is_allowed_url("http://localhost/a", loopback_http=True)
    assert not is_allowed_url("http://10.0.0.1/a", loopback_http=True)
    assert not is_allowed_url("ftp://example.org/a", loopback_http=True)
