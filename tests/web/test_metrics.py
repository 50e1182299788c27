"""/metrics parsed with prometheus_client's own parser: names, types and values an operator
(and a Grafana dashboard) relies on, after real results and tracker events went through."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.web.serving import served

FRAMES = 28


def _families(text: str) -> dict[str, list[Sample]]:
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def _types(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_metrics_parse_with_the_prometheus_parser() -> None:
    with served() as web:
        web.feed(FRAMES)
        web.request("GET", "/api/frame.jpg?after=-1")
        status, headers, body = web.request("GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    families, types = _families(text), _types(text)
    assert types["edgecam_inference_seconds"] == "histogram"
    count = next(s for s in families["edgecam_inference_seconds"] if s.name.endswith("_count"))
    total = next(s for s in families["edgecam_inference_seconds"] if s.name.endswith("_sum"))
    assert count.value == FRAMES and abs(total.value - FRAMES * 0.020) < 1e-6
    stages = {
        s.labels["stage"] for s in families["edgecam_stage_seconds"] if s.name.endswith("_count")
    }
    assert stages == {"capture", "preprocess", "invoke", "postprocess"}
    detections = {
        s.labels["label"]: s.value
        for s in families["edgecam_detections"]
        if s.name == "edgecam_detections_total"
    }
    assert detections == {"person": FRAMES, "dog": FRAMES}
    events = {
        (s.labels["type"], s.labels["label"]): s.value
        for s in families["edgecam_events"]
        if s.name == "edgecam_events_total"
    }
    assert events[("new", "person")] == 1 and events[("new", "dog")] == 1
    assert events[("update", "person")] >= 1  # entered the zone
    assert types["edgecam_source_reconnects"] == "counter"
    assert families["edgecam_source_up"][0].value == 1
    assert families["edgecam_healthy"][0].value == 1
    assert families["edgecam_web_frames_encoded"][0].value == 1
    assert types["edgecam_info"] == "gauge"  # an info metric is a gauge of 1 in text format
    assert families["edgecam_info"][0].value == 1
    info = families["edgecam_info"][0].labels
    assert info["model"] == "ssd_mobilenet_v1" and info["runtime"] == "litert"
    assert "process_resident_memory_bytes" in families  # the standard process collector
    # no pipeline and no MQTT in this server: their series are absent, not zero
    assert "edgecam_frames_processed" not in families
    assert "edgecam_mqtt_connected" not in families


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    with served() as web:
        web.feed(3)
        status, headers, body = web.request(
            "GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
