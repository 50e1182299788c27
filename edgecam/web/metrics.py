"""`/metrics`: Prometheus text exposition through prometheus_client, on a registry of our own.

Two kinds of series. Per-frame distributions nobody else keeps (inference and stage
histograms, detections per label, events per type) are observed by the web sink on the
output thread: a histogram observation costs about a microsecond. Everything already counted
elsewhere (frames, drops, MQTT messages, outbox, reconnects) is read at scrape time from its
owner by a custom collector, so there is one count and one truth. The metric names are listed
in the README ("Prometheus metrics") for Grafana.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from edgecam.types import Detections, Result
from edgecam.web.health import RunView, cpu_temperature_c

#: Seconds: sub-ms capture/preprocess stages up to tflite-runtime invokes on a Pi 3 (~1 s).
LATENCY_BUCKETS = (
    *(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05),
    *(0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)
STAGES = ("capture", "preprocess", "invoke", "postprocess")


class RunCollector(Collector):
    """Scrape-time view of the counters the pipeline, MQTT sink and source already keep."""

    def __init__(self, run: RunView) -> None:
        self.run = run
        #: Set by the server: returns {"clients": open connections, "encoded": JPEGs so far}.
        self.web_counters: Callable[[], Mapping[str, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._pipeline()
        yield from self._mqtt()
        yield from self._source()
        info = self.run.info
        meta = InfoMetricFamily("edgecam", "what this edgecam process runs")
        meta.add_metric(
            [],
            {
                "version": info.version,
                "device_id": info.device_id,
                "model": info.model,
                "runtime": info.runtime,
                "runtime_version": info.runtime_version,
                "threads": str(info.threads),
            },
        )
        yield meta
        healthy, _ = self.run.health()
        yield GaugeMetricFamily(
            "edgecam_healthy", "1 while frames flow (what /healthz answers 200 for)", healthy
        )
        temp = cpu_temperature_c()
        if temp is not None:
            yield GaugeMetricFamily("edgecam_cpu_temperature_celsius", "CPU temperature", temp)
        if self.web_counters is not None:
            web = self.web_counters()
            yield GaugeMetricFamily("edgecam_web_clients", "open web connections", web["clients"])
            yield CounterMetricFamily(
                "edgecam_web_frames_encoded", "live view JPEGs encoded", web["encoded"]
            )

    def _pipeline(self) -> Iterator[Metric]:
        progress = self.run.progress()
        if progress is None:
            return
        for name, value, doc in (
            ("frames_captured", progress.frames_in, "frames read from the source"),
            ("frames_processed", progress.processed, "frames inferred and published"),
            ("frames_dropped", progress.dropped, "stale live frames replaced by newer ones"),
            ("frames_motion_skipped", progress.motion_skipped, "frames skipped: no motion"),
        ):
            yield CounterMetricFamily(f"edgecam_{name}", doc, value)
        yield GaugeMetricFamily(
            "edgecam_pipeline_uptime_seconds",
            "seconds since the pipeline started",
            progress.uptime_s,
        )

    def _mqtt(self) -> Iterator[Metric]:
        counters = self.run.mqtt_counters()
        if counters is None:
            return
        yield GaugeMetricFamily(
            "edgecam_mqtt_connected",
            "1 while connected to the broker",
            counters["state"] == "connected",
        )
        for name, key, doc in (
            ("messages_published", "published", "messages handed to the network"),
            ("messages_acked", "acked", "messages the broker acknowledged"),
            ("messages_dropped", "messages_dropped", "oldest messages dropped at the outbox cap"),
            ("messages_rejected", "messages_rejected", "PUBACKs with an error reason"),
            ("reconnects", "reconnects", "broker reconnections"),
        ):
            yield CounterMetricFamily(f"edgecam_mqtt_{name}", doc, counters[key])
        yield GaugeMetricFamily(
            "edgecam_mqtt_outbox_messages",
            "messages waiting in the outbox",
            counters["outbox_depth"],
        )
        yield GaugeMetricFamily(
            "edgecam_mqtt_outbox_bytes", "bytes waiting in the outbox", counters["outbox_bytes"]
        )

    def _source(self) -> Iterator[Metric]:
        state = self.run.source_state()
        yield CounterMetricFamily(
            "edgecam_source_reconnects", "successful source reconnections", state["reconnects"]
        )
        yield GaugeMetricFamily(
            "edgecam_source_up",
            "1 while the source delivers (0: reconnecting)",
            state["state"] == "ok",
        )


class WebMetrics:
    """The registry behind /metrics and the per-frame observations that feed it."""

    def __init__(self, run: RunView) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.inference = Histogram(
            "edgecam_inference_seconds",
            "interpreter invoke time per frame",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "edgecam_stage_seconds",
            "time per frame in each pipeline stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgecam_latency_seconds",
            "capture to result, per frame",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.detections = PromCounter(
            "edgecam_detections",
            "objects detected per label (classifiers: the top-1 label)",
            ["label"],
            registry=self.registry,
        )
        self.events = PromCounter(
            "edgecam_events",
            "tracked-object events (new, update, end) per label",
            ["type", "label"],
            registry=self.registry,
        )
        self._stage_children = {s: self.stage.labels(stage=s) for s in STAGES}
        self._detection_children: dict[str, Any] = {}
        self.collector = RunCollector(run)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def observe(self, result: Result, latency_s: float) -> None:
        """Output thread, once per result: a few histogram/counter increments."""
        timings = result.timings_ms
        invoke = timings.get("invoke")
        if invoke is not None:
            self.inference.observe(invoke / 1000)
        for stage, child in self._stage_children.items():
            value = timings.get(stage)
            if value is not None:
                child.observe(value / 1000)
        self.latency.observe(latency_s)
        output = result.output
        if isinstance(output, Detections):
            for label, count in Counter(output.label).items():
                self._detected(label).inc(count)
        elif len(output):
            self._detected(output.label[0]).inc()

    def _detected(self, label: str) -> Any:
        """The label's counter child, looked up once (labels() takes a lock and builds a key)."""
        child = self._detection_children.get(label)
        if child is None:
            child = self._detection_children[label] = self.detections.labels(label=label)
        return child

    def event(self, payload: Mapping[str, Any]) -> None:
        self.events.labels(type=str(payload.get("event")), label=str(payload.get("label"))).inc()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type): text format 0.0.4, or OpenMetrics when the scraper asks."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
