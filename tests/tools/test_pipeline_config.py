"""Settings from the reference checkpoint's real pipeline.config, the release pins, and the
one-line refusals of configs the converter cannot rebuild exactly. No TensorFlow needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.core import ssd
from edgecam.errors import ModelError, UsageError
from edgecam.models.manifest import parse_manifest
from tools import convert_ssd
from tools._common import SHIPPED_MANIFEST, sha256_file
from tools._pipeline_config import read_pipeline_config, settings_from_text
from tools._release import CONFIG, INDEX, META, RELEASES

FOLDER = "ssdlite_mobilenet_v2_coco_2018_05_09"


@pytest.fixture(scope="module")
def config_path(assets: Path) -> Path:
    return assets / "reference" / FOLDER / "pipeline.config"


@pytest.fixture(scope="module")
def config_text(config_path: Path) -> str:
    return config_path.read_text()


def test_reference_config_settings(config_path: Path) -> None:
    s = read_pipeline_config(config_path)
    assert s.arch == "ssdlite_mobilenet_v2" and (s.height, s.width) == (300, 300)
    assert s.num_classes == 90 and s.depth_multiplier == 1.0 and s.min_depth == 16
    assert s.scales == (10.0, 10.0, 5.0, 5.0) and s.score_converter == "SIGMOID"
    assert s.nms.score_threshold == pytest.approx(0.3) and s.nms.iou_threshold == pytest.approx(0.6)
    assert (s.nms.max_detections_per_class, s.nms.max_total_detections) == (100, 100)
    a = s.anchors
    assert (a.min_scale, a.max_scale) == pytest.approx((0.2, 0.95))
    assert a.aspect_ratios == pytest.approx((1.0, 2.0, 0.5, 3.0, 0.3333))  # 0.3333, not 1/3
    assert a.interpolated_scale_aspect_ratio == 1.0 and a.reduce_boxes_in_lowest_layer
    sizes = ssd.reference_feature_map_sizes(300, 300)
    assert ssd.generate_anchors(sizes, **a.kwargs()).shape == (1917, 4)


def test_settings_drive_the_graph_and_the_op(config_path: Path) -> None:
    settings = read_pipeline_config(config_path)
    parser = convert_ssd.build_parser()
    args = parser.parse_args(["--random", "--out", "x"])
    cfg = convert_ssd._config(args, settings)
    assert (cfg.size, cfg.num_classes, cfg.anchors) == (300, 90, settings.anchors)
    opts = convert_ssd._postprocess(args, cfg, settings)
    assert opts.nms_score_threshold == pytest.approx(0.3) and opts.detections_per_class == 100
    assert opts.nms_iou_threshold == pytest.approx(0.6) and opts.scales == (10.0, 10.0, 5.0, 5.0)
    assert opts.max_detections == 10 and not opts.use_regular_nms  # TF exporter defaults
    wider = parser.parse_args(["--random", "--size", "320", "--regular-nms", "--out", "x"])
    assert convert_ssd._config(wider, settings).size == 320  # the explicit 320 option
    assert convert_ssd._postprocess(wider, cfg, settings).use_regular_nms
    clash = parser.parse_args(["--random", "--num-classes", "80", "--out", "x"])
    with pytest.raises(UsageError, match=r"--num-classes 80 contradicts .*pipeline.config \(90\)"):
        convert_ssd._config(clash, settings)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "fixed_shape_resizer {\n        height: 300\n        width: 300\n      }",
            "keep_aspect_ratio_resizer { min_dimension: 300 }",
            "model.ssd.image_resizer: 'keep_aspect_ratio_resizer' is not supported",
        ),
        ("width: 300", "width: 320", "fixed_shape_resizer: '300x320' is not supported"),
        ("score_converter: SIGMOID", "score_converter: SOFTMAX", "score_converter: 'SOFTMAX'"),
        (
            "use_depthwise: true\n    }\n    box_coder",
            "}\n    box_coder",
            "feature_extractor.type: 'ssd_mobilenet_v2 with use_depthwise false'",
        ),
        ("kernel_size: 3", "kernel_size: 1", "kernel_size: 1.0 is not supported (expected 3"),
        ("num_layers: 6", "num_layers: 6\n        scales: 0.1", "ssd_anchor_generator.scales"),
        ("num_classes: 90", "", "model.ssd.num_classes: expected an integer >= 1, got 0"),
        ("num_classes: 90", "num_classes: ninety", "num_classes: expected a number, got 'ninety'"),
    ],
)
def test_unsupported_configs_are_one_line_errors(
    config_text: str, old: str, new: str, message: str
) -> None:
    assert old in config_text
    with pytest.raises(ModelError) as info:
        settings_from_text(config_text.replace(old, new, 1), "my/pipeline.config")
    text = str(info.value)
    assert text.startswith("my/pipeline.config: ") and message in text and "\n" not in text


def test_malformed_config_names_the_line(config_text: str) -> None:
    with pytest.raises(ModelError, match=r"^x.config: line 6: cannot parse '@'"):
        settings_from_text(config_text.replace("height: 300", "height: @", 1), "x.config")
    with pytest.raises(ModelError, match="unbalanced braces"):
        settings_from_text(config_text + "\nmodel {", "x.config")
    with pytest.raises(ModelError, match=r"model is missing"):
        settings_from_text("# nothing\n", "x.config")


def test_release_pins_are_the_reference_files(assets: Path) -> None:
    """The pins were not typed from memory: they are the real files' digests."""
    release = RELEASES["ssdlite_mobilenet_v2_coco"]
    folder = assets / "reference" / FOLDER
    for name in (INDEX, CONFIG, META):
        assert release.member_sha256[name] == sha256_file(folder / name)
    assert release.member_sha256[INDEX] == (
        "2cefe97b549c23a9c915b5daa938781261f2123ec3e4ab50778bdd8445915445"
    )
    assert release.url.startswith("https://") and release.url.endswith(f"/{FOLDER}.tar.gz")
    assert release.documented_url.endswith(release.url.rsplit("download.tensorflow.org", 1)[1])
    assert (release.size, release.manifest_name) == (300, "ssdlite_v2")


def test_manifest_build_line_is_the_one_command() -> None:
    manifest = parse_manifest(SHIPPED_MANIFEST.read_text(), str(SHIPPED_MANIFEST))
    spec = manifest.models["ssdlite_v2"]
    assert spec.build == convert_ssd.OFFICIAL_COMMAND
    assert spec.checkpoint_url == RELEASES["ssdlite_mobilenet_v2_coco"].url
    assert (spec.input_width, spec.input_height) == (300, 300)
    assert spec.file == "ssdlite_mobilenet_v2_coco_300_int8.tflite"
