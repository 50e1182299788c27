"""Find, check and label model files (fetching them is :mod:`edgecam.models.fetch`).

A model is used only after its bytes were checked: size and sha256 against the manifest, then
the flatbuffer itself (:mod:`edgecam.models.modelinfo`), then its label file against its outputs. A
broken file therefore ends as a one-line ModelError, never inside the interpreter.

Search path, first hit wins: ``--models-dir``, ``$EDGECAM_MODELS_DIR`` (os.pathsep list),
``$STATE_DIRECTORY/models`` (systemd ``StateDirectory=``), the user cache
(:func:`edgecam.dirs.cache_dir` ``/models``), ``/var/lib/edgecam/models``. Label files are
looked up in each directory, its ``labels/`` subdirectory and a ``labels/`` sibling (the layout
of a models+labels mirror).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgecam import dirs
from edgecam.errors import ModelError
from edgecam.models.manifest import LabelSpec, Manifest, ModelSpec, parse_manifest
from edgecam.models.modelinfo import (
    MAX_MODEL_BYTES,
    ModelInfo,
    embedded_label_file,
    inspect_bytes,
)

log = logging.getLogger(__name__)

ENV_MODELS_DIR = "EDGECAM_MODELS_DIR"
ENV_MIRROR = "EDGECAM_MODEL_MIRROR"
ENV_MANIFEST = "EDGECAM_MANIFEST"
#: Labels and manifests are text: a bound on what is read whole (models: MAX_MODEL_BYTES).
MAX_TEXT_BYTES = 16 << 20
SYSTEM_MODELS_DIR = Path("/var/lib/edgecam/models")


@dataclass(frozen=True)
class ResolvedModel:
    """A model file that passed every check. verified: its sha256 matched the manifest.

    spec.label_offset is the effective one (inferred when ``labels_file`` overrides the
    manifest's label file). info: what the flatbuffer declares (I/O, ops, postprocess options).
    """

    spec: ModelSpec
    model_path: Path
    labels: tuple[str, ...]
    label_path: Path | None
    verified: bool
    info: ModelInfo | None = None


# ---- search path and manifest ------------------------------------------------------------


def model_search_path(models_dir: Path | None = None) -> list[Path]:
    """Where model and label files are looked for, first hit wins; fetch writes to the first
    writable one of the same list (except the system directory). A directory the user named
    (models_dir, $EDGECAM_MODELS_DIR) that exists as something else is an error, not skipped."""
    found: list[Path] = [Path(models_dir)] if models_dir else []
    found += [Path(p) for p in os.environ.get(ENV_MODELS_DIR, "").split(os.pathsep) if p]
    for index, named in enumerate(found):
        if named.expanduser().exists() and not named.expanduser().is_dir():
            named_by_user = models_dir and index == 0
            what = "--models-dir (model.models_dir)" if named_by_user else ENV_MODELS_DIR
            raise ModelError(
                f"{what} {named}: not a directory",
                hint="name the directory that holds the .tflite and label files",
            )
    state = dirs.systemd_state_dir()
    if state:
        found.append(state / "models")
    cache = user_models_dir()
    if cache:
        found.append(cache)
    found.append(SYSTEM_MODELS_DIR)
    unique: list[Path] = []
    for d in (p.expanduser() for p in found):
        if d not in unique:
            unique.append(d)
    return unique


def user_models_dir() -> Path | None:
    """``models/`` in the user's cache directory; None when there is no home to put it in."""
    try:
        return dirs.cache_dir() / "models"
    except RuntimeError:  # no HOME and no passwd entry (some containers)
        return None


def _read_text(path: Path | Any, what: str) -> str:
    try:
        data = dirs.read_regular_file(path, MAX_TEXT_BYTES) if isinstance(path, Path) else None
        text: str = path.read_text(encoding="utf-8") if data is None else data.decode("utf-8")
        return text
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: cannot read {what}: not UTF-8 text ({exc.reason})") from exc


def load_manifest(models_dir: Path | None = None) -> Manifest:
    """The shipped manifest, then ``*.toml`` of the search path (lowest priority first), then
    ``$EDGECAM_MANIFEST``; later entries replace earlier ones of the same name."""
    shipped = dirs.shipped("manifest.toml", "models/manifest.toml")
    manifest = parse_manifest(_read_text(shipped, "manifest"), str(shipped))
    extra = [t for d in reversed(model_search_path(models_dir)) for t in _tomls(d)]
    env = os.environ.get(ENV_MANIFEST)
    if env:
        extra.append(Path(env))
    for path in extra:
        manifest = parse_manifest(_read_text(path, "manifest"), str(path), manifest)
    return manifest


def _tomls(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.glob("*.toml") if p.is_file())
    except OSError:
        return []


def lookup(manifest: Manifest, name: str) -> ModelSpec:
    spec = manifest.models.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, manifest.names(), n=1)
        maybe = f"did you mean {close[0]!r}? " if close else ""
        raise ModelError(
            f"unknown model {name!r}: {maybe}known: {', '.join(manifest.names())}",
            hint="or pass the path of a .tflite file",
        )
    return spec


def find_model_file(file: str, dirs: list[Path]) -> Path | None:
    return next((d / file for d in dirs if (d / file).is_file()), None)


def label_candidates(file: str, dirs: list[Path]) -> list[Path]:
    return [c for d in dirs for c in (d / file, d / "labels" / file, d.parent / "labels" / file)]


def find_label_file(file: str, dirs: list[Path]) -> Path | None:
    return next((c for c in label_candidates(file, dirs) if c.is_file()), None)


# ---- checks ------------------------------------------------------------------------------


def _check_bytes(path: Path, data: bytes, sha256: str | None, size: int | None) -> None:
    if size is not None and len(data) != size:
        kind = "truncated, e.g. an interrupted copy" if len(data) < size else "a different file"
        raise ModelError(
            f"{path}: {len(data)} bytes, expected {size} ({kind})",
            hint="delete it and fetch it again: edgecam models fetch",
        )
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise ModelError(
                f"{path}: sha256 {got}, expected {sha256} (corrupt or a different file)",
                hint="delete it and fetch it again: edgecam models fetch",
            )


def verify_file(path: Path, sha256: str | None, size: int | None) -> None:
    """Raise ModelError unless ``path`` exists with the given size and sha256 (None: unchecked)."""
    try:
        data = dirs.read_regular_file(Path(path), MAX_MODEL_BYTES)
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    _check_bytes(Path(path), data, sha256, size)


def parse_labels(text: str) -> tuple[str, ...]:
    """One label per line; also the ``<id> <label>`` form of Coral label files (gaps -> n/a)."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    pairs = [line.strip().split(maxsplit=1) for line in lines]
    if pairs and all(len(p) == 2 and p[0].isdigit() for p in pairs):
        by_id = {int(p[0]): p[1].strip() for p in pairs}
        return tuple(by_id.get(i, "n/a") for i in range(max(by_id) + 1))
    return tuple(line.strip() for line in lines)


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        text = dirs.read_regular_file(Path(path), MAX_TEXT_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise ModelError(f"{path}: label file not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read label file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ModelError(
            f"{path}: cannot read label file: not UTF-8 text ({exc.reason})",
            hint="save it as UTF-8, one class name per line",
        ) from exc
    labels = parse_labels(text)
    if not labels:
        raise ModelError(f"{path}: label file is empty", hint="one class name per line")
    return labels


def _count_error(
    labels_src: str, n_labels: int, offset: int, model: Path, n_classes: int
) -> ModelError:
    return ModelError(
        f"label file {labels_src} has {n_labels} labels (offset {offset}: "
        f"{n_labels - offset} classes) but model {model} has {n_classes} classes",
        hint="use the label file made for this model (--labels-file)",
    )


# ---- resolve ----------------------------------------------------------------------------


def _looks_like_path(name: str) -> bool:
    return name.endswith(".tflite") or "/" in name or os.sep in name


def resolve_model(
    name_or_path: str,
    *,
    models_dir: Path | None = None,
    labels_file: Path | None = None,
    verify: bool = True,
) -> ResolvedModel:
    """Manifest name or .tflite path -> checked model file, spec and labels."""
    dirs = model_search_path(models_dir)
    manifest = load_manifest(models_dir)
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        data = _read_model(path)
        spec, verified = _spec_for_file(path, data, manifest)
    else:
        spec = lookup(manifest, name_or_path)
        found = find_model_file(spec.file, dirs)
        if found is None:
            raise missing_model_error(spec, dirs)
        path, data = found, _read_model(found)
        if verify:
            _check_bytes(path, data, spec.sha256, spec.size)
        verified = verify and spec.sha256 is not None
    # A file whose sha256 matches its manifest entry is the model the entry describes: no
    # need to parse it (the flatbuffer reader is the heaviest import of a run).
    info = None if verified else inspect_bytes(data, str(path))
    if info is not None:
        _check_spec(spec, info, path)
    labels, label_path, spec = _labels_for(
        spec, info, data, path, labels_file=labels_file, dirs=dirs, verify=verify
    )
    return ResolvedModel(spec, path, labels, label_path, verified, info)


def _read_model(path: Path) -> bytes:
    try:
        return dirs.read_regular_file(path, MAX_MODEL_BYTES)
    except FileNotFoundError:
        raise ModelError(f"{path}: model file not found", hint="check the path") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, expected a .tflite file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc.strerror or exc}") from exc


def missing_model_error(spec: ModelSpec, dirs: list[Path]) -> ModelError:
    where = ", ".join(str(d) for d in dirs)
    if spec.url is None:
        build = spec.build or "see the manifest"
        origin = f" (float checkpoint: {spec.checkpoint_url})" if spec.checkpoint_url else ""
        return ModelError(
            f"model {spec.name}: {spec.file} not found in {where}; it has no prebuilt int8 "
            f"download, build it: {build}{origin}",
            hint="run it in a checkout of the edgecam source after `pip install '.[tools]'`; "
            "it writes the model and its manifest entry into the first writable of those "
            "directories (--out DIR to choose)",
        )
    return ModelError(
        f"model {spec.name}: {spec.file} not found in {where}",
        hint=f"run `edgecam models fetch {spec.name}`, or "
        f"`edgecam models fetch {spec.name} --from DIR` to copy it from a local directory",
    )


def _spec_for_file(path: Path, data: bytes, manifest: Manifest) -> tuple[ModelSpec, bool]:
    """A manifest entry whose sha256 matches the file, else a spec read from the file itself."""
    digest = hashlib.sha256(data).hexdigest()
    for spec in manifest.models.values():
        if spec.sha256 == digest:
            return spec, True
    info = inspect_bytes(data, str(path))
    if info.task is None or not info.inputs or len(info.inputs[0].shape) != 4:
        raise ModelError(
            f"{path}: cannot tell whether this is a classifier or an SSD detector "
            f"(outputs: {', '.join(f'{t.name}{list(t.shape)}' for t in info.outputs)})",
            hint="edgecam runs 1-output classifiers and SSD detectors",
        )
    _, height, width, _ = info.inputs[0].shape
    dtype = info.inputs[0].dtype
    classifier = info.task == "classification"
    spec = ModelSpec(
        name=path.stem,
        task=info.task,
        file=path.name,
        input_width=width,
        input_height=height,
        input_dtype=dtype if dtype in ("uint8", "int8", "float32") else "uint8",  # type: ignore[arg-type]
        resize="crop" if classifier else "stretch",
        threshold=0.1 if classifier else 0.5,
        top_k=5 if classifier else 10,
        description="local model file (not in the manifest)",
        source=str(path),
    )
    return spec, False


def _check_spec(spec: ModelSpec, info: ModelInfo, path: Path) -> None:
    """The file must be the model the manifest describes (matters for unhashed entries)."""
    if not info.inputs:
        raise ModelError(f"{path}: model has no input tensor")
    shape = info.inputs[0].shape
    if len(shape) != 4 or (shape[1], shape[2]) != (spec.input_height, spec.input_width):
        raise ModelError(
            f"{path}: input shape {list(shape)}, but model {spec.name} ({spec.source}) expects "
            f"[1, {spec.input_height}, {spec.input_width}, 3]",
            hint="wrong file for this manifest entry",
        )
    if info.task is not None and info.task != spec.task:
        raise ModelError(
            f"{path}: looks like a {info.task} model, manifest entry {spec.name} says {spec.task}"
        )
    if info.inputs[0].dtype != spec.input_dtype:
        log.warning(
            "%s: input dtype %s, manifest says %s; using the file's",
            path,
            info.inputs[0].dtype,
            spec.input_dtype,
        )


def _labels_for(
    spec: ModelSpec,
    info: ModelInfo | None,
    data: bytes,
    model_path: Path,
    *,
    labels_file: Path | None,
    dirs: list[Path],
    verify: bool,
) -> tuple[tuple[str, ...], Path | None, ModelSpec]:
    n = info.num_classes if info is not None else None

    def classes() -> int | None:
        """The file's class count, parsing it now if resolve_model did not."""
        return (info or inspect_bytes(data, str(model_path))).num_classes

    if labels_file is not None:
        labels = read_labels(labels_file)
        offset = _infer_offset(len(labels), classes(), str(labels_file), model_path)
        return labels, Path(labels_file), replace(spec, label_offset=offset)
    embedded = embedded_label_file(data)
    if spec.labels is not None:
        found = find_label_file(spec.labels.file, dirs)
        if found is not None:
            if verify:
                verify_file(found, spec.labels.sha256, spec.labels.size)
            labels = read_labels(found)
            if n is not None and len(labels) - spec.label_offset != n:
                raise _count_error(str(found), len(labels), spec.label_offset, model_path, n)
            return labels, found, spec
        if embedded is None:
            raise _missing_labels_error(spec, spec.labels, dirs)
        log.warning(
            "%s not found; using the label file embedded in %s", spec.labels.file, model_path
        )
    if embedded is not None:
        labels = parse_labels(embedded[1].decode("utf-8-sig", "replace"))
        source = f"{model_path}!{embedded[0]}"
        offset = _infer_offset(len(labels), classes(), source, model_path)
        return labels, None, replace(spec, label_offset=offset)
    count = classes() or 0
    log.warning(
        "%s: no label file; naming classes class_0..class_%d (use --labels-file)",
        model_path,
        count - 1,
    )
    return tuple(f"class_{i}" for i in range(count)), None, replace(spec, label_offset=0)


def _infer_offset(n_labels: int, n_classes: int | None, source: str, model: Path) -> int:
    """0 when labels map 1:1 to classes, 1 when the file has an extra background/??? line first."""
    if n_classes is None:
        return 0
    extra = n_labels - n_classes
    if extra not in (0, 1):
        raise _count_error(source, n_labels, max(extra, 0), model, n_classes)
    return extra


def _missing_labels_error(spec: ModelSpec, label: LabelSpec, dirs: list[Path]) -> ModelError:
    where = ", ".join(str(d) for d in dirs)
    return ModelError(
        f"model {spec.name}: label file {label.file} not found in {where} "
        "(or their labels/ folders)",
        hint=f"`edgecam models fetch {spec.name}` fetches it too; or pass --labels-file",
    )
