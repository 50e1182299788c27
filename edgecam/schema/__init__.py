"""edgecam's MQTT payloads for subscribers: a typed parser and the JSON Schemas.

Third parties import this package to turn a message into frozen dataclasses; it imports only
the standard library (no numpy, no OpenCV, no paho). A malformed payload raises PayloadError
naming the first bad field, and nothing else, whatever the bytes (size, nesting and number
literals are bounded: see read_json). Unknown extra fields are ignored (tolerant reader); the
JSON Schema files next to this module describe exactly what schema version 1 producers emit.
"""

from edgecam.schema._reader import MAX_DEPTH, MAX_JSON_BYTES, PayloadError, read_json
from edgecam.schema.messages import (
    BestObservation,
    Box,
    ClassificationMessage,
    ClassScore,
    CountMessage,
    Detection,
    DetectionsMessage,
    EventMessage,
    EventType,
    Execution,
    ExecutionTrial,
    Message,
    PixelBox,
    PublisherStats,
    SnapshotMessage,
    StatsMessage,
    StatusMessage,
    Topic,
)
from edgecam.schema.parse import (
    DEVICE_ID_RULE,
    MAX_SNAPSHOT_BYTES,
    SCHEMA_VERSION,
    is_device_id,
    json_schema,
    parse_classification,
    parse_detections,
    parse_event,
    parse_message,
    parse_stats,
    parse_status,
    parse_topic,
)

__all__ = [
    "DEVICE_ID_RULE",
    "MAX_DEPTH",
    "MAX_JSON_BYTES",
    "MAX_SNAPSHOT_BYTES",
    "SCHEMA_VERSION",
    "BestObservation",
    "Box",
    "ClassScore",
    "ClassificationMessage",
    "CountMessage",
    "Detection",
    "DetectionsMessage",
    "EventMessage",
    "EventType",
    "Execution",
    "ExecutionTrial",
    "Message",
    "PayloadError",
    "PixelBox",
    "PublisherStats",
    "SnapshotMessage",
    "StatsMessage",
    "StatusMessage",
    "Topic",
    "is_device_id",
    "json_schema",
    "parse_classification",
    "parse_detections",
    "parse_event",
    "parse_message",
    "parse_stats",
    "parse_status",
    "parse_topic",
    "read_json",
]
