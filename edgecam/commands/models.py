"""`edgecam models list | info NAME | fetch NAME|--all | verify [NAME]`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecam.errors import EXIT_OK, EXIT_USAGE, EdgecamError, ModelError, UsageError
from edgecam.models.fetch import fetch
from edgecam.models.files import (
    find_model_file,
    load_manifest,
    lookup,
    model_search_path,
    resolve_model,
)
from edgecam.models.manifest import ModelSpec
from edgecam.models.modelinfo import ModelInfo, TensorDesc, inspect_model


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, inspect, fetch and verify model files",
        description="Models known to the manifest, where their files are, and their integrity.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", type=Path, help="directory searched first for model files")
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", required=True)

    p = actions.add_parser("list", parents=[common], help="all known models and whether present")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(handler=list_command)

    p = actions.add_parser("info", parents=[common], help="manifest entry and file contents")
    p.add_argument("name", metavar="NAME", help="manifest name or .tflite path")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.set_defaults(handler=info_command)

    p = actions.add_parser("fetch", parents=[common], help="download (or copy) model + labels")
    p.add_argument("name", metavar="NAME", nargs="?", help="manifest name")
    p.add_argument("--all", action="store_true", help="every model that has a download")
    p.add_argument("--from", dest="mirror", type=Path, metavar="DIR", help="copy from local DIR")
    p.add_argument("--dest", type=Path, metavar="DIR", help="target directory")
    p.set_defaults(handler=fetch_command)

    p = actions.add_parser("verify", parents=[common], help="check size, sha256, format, labels")
    p.add_argument("name", metavar="NAME", nargs="?", help="default: every model found")
    p.set_defaults(handler=verify_command)


# ---- list ---------------------------------------------------------------------------------


def _status(spec: ModelSpec, dirs: list[Path]) -> tuple[str, Path | None]:
    path = find_model_file(spec.file, dirs)
    if path is None:
        return ("missing" if spec.url else "missing (build)"), None
    if spec.size is not None and path.stat().st_size != spec.size:
        return "corrupt", path
    return "present", path


def _input_text(spec: ModelSpec) -> str:
    return f"{spec.input_width}x{spec.input_height} {spec.input_dtype}"


def list_command(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.models_dir)
    dirs = model_search_path(args.models_dir)
    rows: list[dict[str, Any]] = []
    table = [("NAME", "TASK", "INPUT", "STATUS", "WHERE")]
    for name in manifest.names():
        spec = manifest.models[name]
        status, path = _status(spec, dirs)
        rows.append(
            {
                "name": name,
                "primary": spec.primary,
                "task": spec.task,
                "input": {"width": spec.input_width, "height": spec.input_height},
                "dtype": spec.input_dtype,
                "status": status,
                "path": str(path) if path else None,
                "file": spec.file,
            }
        )
        shown = name + ("*" if spec.primary else "")
        table.append((shown, spec.task, _input_text(spec), status, str(path or "-")))
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    print(f"\n* primary model. Searched: {', '.join(map(str, dirs))}")
    print("`edgecam models verify` checks sha256; `edgecam models fetch NAME` downloads.")
    return EXIT_OK


# ---- info ---------------------------------------------------------------------------------


@dataclass
class _Report:
    """What `models info` knows about one model; a broken file ends in ``error``, not raised."""

    spec: ModelSpec | None = None
    path: Path | None = None
    status: str = "missing"
    verified: bool | None = None
    error: str | None = None
    label_path: Path | None = None
    label_count: int | None = None
    info: ModelInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": asdict(self.spec) if self.spec else None,
            "path": str(self.path) if self.path else None,
            "status": self.status,
            "verified": self.verified,
            "error": self.error,
            "labels": {
                "path": str(self.label_path) if self.label_path else None,
                "count": self.label_count,
            },
            "modelinfo": asdict(self.info) if self.info else None,
        }


def _gather(name: str, models_dir: Path | None) -> _Report:
    report = _Report()
    if name.endswith(".tflite") or "/" in name:
        report.path = Path(name)
    else:
        report.spec = lookup(load_manifest(models_dir), name)
        report.path = find_model_file(report.spec.file, model_search_path(models_dir))
        if report.path is None:
            return report
    try:
        resolved = resolve_model(name, models_dir=models_dir)
    except ModelError as exc:
        report.status, report.error = "error", str(exc)
    else:
        report.spec, report.status, report.verified = resolved.spec, "ok", resolved.verified
        report.label_path, report.label_count = resolved.label_path, len(resolved.labels)
    try:
        report.info = inspect_model(report.path)
    except EdgecamError:
        report.info = None
    return report


def _tensor_text(t: TensorDesc) -> str:
    quant = f" q=({t.scale:.6g}, {t.zero_point})" if t.scale is not None else ""
    role = f" [{t.role}]" if t.role else ""
    return f"{t.name} {list(t.shape)} {t.dtype}{quant}{role}"


def _print_spec(spec: ModelSpec) -> None:
    labels = spec.labels
    rows = [
        ("name", spec.name + (" (primary)" if spec.primary else "")),
        ("task", spec.task),
        ("description", spec.description),
        ("file", spec.file),
        ("url", spec.url or "none (no prebuilt download)"),
        ("sha256", spec.sha256 or "-"),
        ("size", f"{spec.size} bytes" if spec.size else "-"),
        (
            "input",
            f"{spec.input_width}x{spec.input_height} {spec.pixel_format} "
            f"{spec.input_dtype}, resize {spec.resize}",
        ),
        ("labels", f"{labels.file} (offset {spec.label_offset})" if labels else "-"),
        ("threshold", f"{spec.threshold} (top_k {spec.top_k})"),
    ]
    if spec.paper:
        rows.append(("paper", f"{spec.paper.title} (https://arxiv.org/abs/{spec.paper.arxiv})"))
    if spec.accuracy:
        acc = spec.accuracy
        rows.append(("accuracy", f"{acc.metric} {acc.value:g} ({acc.source})"))
    for key in ("reference", "origin", "licence", "checkpoint_url", "build", "source"):
        value = getattr(spec, key)
        if value:
            rows.append(("manifest" if key == "source" else key, str(value)))
        if value and key == "build":
            rows.append(("", "(in a checkout of the edgecam source, after pip install '.[tools]')"))
    for key, text in rows:
        print(f"{key + ':' if key else '':<16}{text}")


def _print_modelinfo(info: ModelInfo) -> None:
    print("model file:")
    for t in info.inputs:
        print(f"  input:  {_tensor_text(t)}")
    for t in info.outputs:
        print(f"  output: {_tensor_text(t)}")
    print(f"  ops:    {', '.join(info.ops)}")
    if info.custom_ops:
        print(f"  custom: {', '.join(info.custom_ops)}")
    if info.postprocess:
        pp = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in asdict(info.postprocess).items()
        )
        print(f"  postprocess: {pp}")
    if info.embedded_files:
        print(f"  embedded files: {', '.join(info.embedded_files)}")


def info_command(args: argparse.Namespace) -> int:
    report = _gather(args.name, args.models_dir)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        if report.spec:
            _print_spec(report.spec)
        dirs = ", ".join(map(str, model_search_path(args.models_dir)))
        state = ""
        if report.verified is not None:
            state = " (sha256 verified)" if report.verified else " (no sha256 to check)"
        print(f"{'path:':<16}{report.path or 'not found in ' + dirs}{state}")
        if report.label_count is not None:
            where = report.label_path or "embedded in the model"
            print(f"{'label file:':<16}{where} ({report.label_count} labels)")
        if report.info:
            _print_modelinfo(report.info)
    if report.error:
        print(f"edgecam: error: {report.error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


# ---- fetch / verify -------------------------------------------------------------------------


def fetch_command(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.all):
        raise UsageError("give one model NAME or --all", hint="see `edgecam models list`")
    manifest = load_manifest(args.models_dir)
    names = manifest.names() if args.all else [args.name]
    failed = 0
    for name in names:
        try:
            outcome = fetch(name, dest=args.dest, mirror=args.mirror, models_dir=args.models_dir)
        except EdgecamError as exc:
            if not args.all:
                raise
            if manifest.models[name].url is None:
                print(f"{name}: skipped, no prebuilt download (see `edgecam models info {name}`)")
                continue
            print(f"edgecam: error: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {outcome.action} {outcome.path}")
        if outcome.label_path is not None:
            print(f"{name}: labels {outcome.label_action} {outcome.label_path}")
    return EXIT_USAGE if failed else EXIT_OK


def verify_command(args: argparse.Namespace) -> int:
    dirs = model_search_path(args.models_dir)
    if args.name:
        names = [args.name]
    else:
        manifest = load_manifest(args.models_dir)
        names = [n for n in manifest.names() if find_model_file(manifest.models[n].file, dirs)]
        if not names:
            print(f"no model files found in {', '.join(map(str, dirs))}", file=sys.stderr)
            return EXIT_OK
    failed = 0
    for name in names:
        try:
            resolved = resolve_model(name, models_dir=args.models_dir)
        except ModelError as exc:
            if args.name:
                raise
            print(f"edgecam: error: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        how = "sha256 ok" if resolved.verified else "no sha256 in manifest, format ok"
        print(f"ok  {name}  {resolved.model_path}  ({how}, {len(resolved.labels)} labels)")
    if failed:
        print(f"edgecam: error: {failed} of {len(names)} models failed", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
