"""Shared plumbing of the converter scripts: CLI error handling, TensorFlow import, outputs.

The scripts print one line and exit 2 on a user mistake (edgecam's exit-code table), so a
wrong flag never ends in a TensorFlow traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgecam.errors import EXIT_FAILURE, EdgecamError, ModelError, UsageError
from edgecam.models.manifest import Manifest, parse_manifest

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MANIFEST = REPO_ROOT / "models" / "manifest.toml"


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a tool's main with logging set up; EdgecamError → one line on stderr + exit code."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=os.environ.get("EDGECAM_TOOLS_LOG", "INFO").upper(),
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    try:
        return main(argv)
    except EdgecamError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILURE


def import_tf() -> ModuleType:
    """TensorFlow, imported on first use with its C++ log noise turned down."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise UsageError(
            f"TensorFlow is not installed ({exc})",
            "the converters need it: pip install '.[tools]' (tensorflow-cpu, numpy<2 kept)",
        ) from exc
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    module: ModuleType = tf
    return module


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def command_line(argv: Sequence[str] | None, script: str) -> str:
    """The exact command that built a file, recorded in its manifest entry."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", f"tools/{script}", *args])


def read_labels(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read label file {path}: {exc}", "pass a UTF-8 text file") from exc
    return [line.strip() for line in lines if line.strip()]


@dataclass(frozen=True)
class ManifestEntry:
    """What the converters know about the file they wrote, for ``<out>/<name>.toml``."""

    name: str
    task: str
    model_file: Path
    labels_file: Path | None
    input_width: int
    input_height: int
    input_dtype: str
    resize: str
    threshold: float
    top_k: int
    description: str
    reference: str
    origin: str
    build: str
    paper: Mapping[str, str] | None = None
    labels_table: str | None = None  # a shipped [labels.*] table, when no labels_file
    label_offset: int = 0


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_manifest_entry(entry: ManifestEntry, out_dir: Path) -> Path:
    """Write ``<out>/<name>.toml`` in the models/manifest.toml format and validate it.

    edgecam loads every *.toml of a models directory as an extra manifest, so the built
    model becomes usable by name with its sha256 pinned.
    """
    model: dict[str, Any] = {
        "task": entry.task,
        "file": entry.model_file.name,
        "sha256": sha256_file(entry.model_file),
        "size": entry.model_file.stat().st_size,
        "input": {
            "width": entry.input_width,
            "height": entry.input_height,
            "format": "RGB",
            "dtype": entry.input_dtype,
        },
        "resize": entry.resize,
    }
    lines = ["# Written by edgecam tools/ next to the model it describes.", "schema = 1", ""]
    if entry.labels_file is not None:
        lines += [
            f"[labels.{json.dumps(entry.name)}]",
            f"file = {_toml_value(entry.labels_file.name)}",
            f"sha256 = {_toml_value(sha256_file(entry.labels_file))}",
            f"size = {entry.labels_file.stat().st_size}",
            "",
        ]
        model["labels"] = entry.name
        model["label_offset"] = 0
    elif entry.labels_table is not None:
        model["labels"] = entry.labels_table
        model["label_offset"] = entry.label_offset
    model.update(
        threshold=entry.threshold,
        top_k=entry.top_k,
        description=entry.description,
        reference=entry.reference,
        origin=entry.origin,
        build=entry.build,
        licence="Apache-2.0",
    )
    if entry.paper:
        model["paper"] = dict(entry.paper)
    lines.append(f"[models.{json.dumps(entry.name)}]")
    lines += [f"{key} = {_toml_value(value)}" for key, value in model.items()]
    text = "\n".join(lines) + "\n"
    path = out_dir / f"{entry.name}.toml"
    validate_manifest_text(text, str(path))
    path.write_text(text, encoding="utf-8")
    return path


def validate_manifest_text(text: str, source: str) -> Manifest:
    """Parse with edgecam's own manifest reader (over the shipped one, for its label tables)."""
    base = None
    if SHIPPED_MANIFEST.is_file():
        base = parse_manifest(SHIPPED_MANIFEST.read_text(encoding="utf-8"), str(SHIPPED_MANIFEST))
    return parse_manifest(text, source, base)


def check_out_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out}: {exc}") from exc
    return out


def require_file(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise ModelError(f"{what} {path} not found", hint)
    return path
