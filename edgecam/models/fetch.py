"""Download or copy model and label files into a models directory, atomically.

Bytes come from the manifest's HTTPS URL or from a local mirror directory (``--from DIR`` or
``$EDGECAM_MODEL_MIRROR``; label files may sit beside the models, in ``labels/`` or in a
``../labels`` sibling). They are streamed into a temp file in the destination directory,
checked (size, sha256, TFLite identifier) and only then renamed into place, so an interrupted
or wrong download never leaves a file that could later be mistaken for the model.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from edgecam import __version__
from edgecam.errors import FetchError, ModelError
from edgecam.models.files import (
    ENV_MIRROR,
    SYSTEM_MODELS_DIR,
    label_candidates,
    load_manifest,
    lookup,
    missing_model_error,
    model_search_path,
    verify_file,
)
from edgecam.models.manifest import ModelSpec, is_allowed_url
from edgecam.models.modelinfo import check_identifier

log = logging.getLogger(__name__)

Action = Literal["present", "downloaded", "copied"]
_CHUNK = 1 << 16
_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class FetchOutcome:
    """What ``fetch`` did for the model file and its label file."""

    path: Path
    action: Action
    label_path: Path | None = None
    label_action: Action | None = None


def default_fetch_dir(models_dir: Path | None = None) -> Path:
    """The first writable directory of the model search path, the system directory excepted."""
    candidates = [d for d in model_search_path(models_dir) if d != SYSTEM_MODELS_DIR]
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return d
    raise FetchError(
        f"no writable models directory among {', '.join(map(str, candidates)) or '(none)'}",
        hint="pass --dest DIR",
    )


def fetch(
    name: str,
    *,
    dest: Path | None = None,
    mirror: Path | None = None,
    progress: bool = True,
    models_dir: Path | None = None,
    allow_loopback_http: bool = False,
) -> FetchOutcome:
    """Like :func:`edgecam.models.files.fetch_model`, reporting what was done.

    Files already present (in ``dest``, or anywhere on the search path when no ``dest`` is
    given) and matching the manifest are left alone. ``allow_loopback_http``: accept http://
    URLs to this machine (test servers); everything else must be HTTPS.
    """
    spec = lookup(load_manifest(models_dir), name)
    env_mirror = os.environ.get(ENV_MIRROR)
    job = _Job(
        dirs=[Path(dest)] if dest else model_search_path(models_dir),
        target_dir=Path(dest) if dest else default_fetch_dir(models_dir),
        mirror=Path(mirror) if mirror else (Path(env_mirror) if env_mirror else None),
        progress=progress,
        allow_loopback_http=allow_loopback_http,
    )
    url_name = Path(urlsplit(spec.url).path).name if spec.url else spec.file
    model = _Item(spec.file, spec.url, spec.sha256, spec.size, spec, mirror_names=(url_name,))
    path, action = job.get(model)
    if spec.labels is None:
        return FetchOutcome(path, action)
    lab = spec.labels
    label_path, label_action = job.get(_Item(lab.file, lab.url, lab.sha256, lab.size, None))
    return FetchOutcome(path, action, label_path, label_action)


def download(
    url: str,
    target: Path,
    *,
    sha256: str | None,
    size: int | None,
    allow_loopback_http: bool = False,
    progress: bool = False,
    hint: str = "no network? copy the file from elsewhere",
) -> None:
    """Stream an HTTPS URL into ``target`` atomically, checking size and sha256 when given
    (the same code path as model downloads; FetchError on any failure, nothing left behind)."""
    item = _Item(target.name, url, sha256, size, None)
    with _open_url(url, allow_loopback_http, hint) as (read, total):
        if total is not None and size is not None and total != size:
            raise FetchError(f"{url}: server announces {total} bytes, manifest expects {size}")
        _install(read, total, target, item, url, progress=progress)


@dataclass(frozen=True)
class _Item:
    """One file to get. spec: set for model files (labels have none)."""

    file: str
    url: str | None
    sha256: str | None
    size: int | None
    spec: ModelSpec | None
    mirror_names: tuple[str, ...] = ()

    def existing(self, dirs: list[Path]) -> list[Path]:
        if self.spec is None:
            return label_candidates(self.file, dirs)
        return [d / self.file for d in dirs]

    def in_mirror(self, mirror: Path) -> list[Path]:
        if self.spec is None:
            return label_candidates(self.file, [mirror])
        return [mirror / f for f in dict.fromkeys((self.file, *self.mirror_names))]


@dataclass(frozen=True)
class _Job:
    dirs: list[Path]
    target_dir: Path
    mirror: Path | None
    progress: bool
    allow_loopback_http: bool

    def get(self, item: _Item) -> tuple[Path, Action]:
        for candidate in item.existing(self.dirs):
            if candidate.is_file() and _is_good(candidate, item):
                return candidate, "present"
        target = self.target_dir / item.file
        if self.mirror is not None:
            looked = item.in_mirror(self.mirror)
            source = next((p for p in looked if p.is_file()), None)
            if source is None:
                raise FetchError(
                    f"{item.file} is not in the mirror (looked for {', '.join(map(str, looked))})",
                    hint="check --from DIR / EDGECAM_MODEL_MIRROR",
                )
            with source.open("rb") as f:
                _install(
                    f.read, source.stat().st_size, target, item, str(source), progress=self.progress
                )
            return target, "copied"
        if item.url is None:
            if item.spec is not None:
                raise missing_model_error(item.spec, self.dirs)
            raise FetchError(f"{item.file}: the manifest gives no URL to download it from")
        hint = (
            f"no network? copy the file into one of {', '.join(map(str, self.dirs))} "
            "or use --from DIR / EDGECAM_MODEL_MIRROR"
        )
        with _open_url(item.url, self.allow_loopback_http, hint) as (read, total):
            if total is not None and item.size is not None and total != item.size:
                raise FetchError(
                    f"{item.url}: server announces {total} bytes, manifest expects {item.size}"
                )
            _install(read, total, target, item, item.url, progress=self.progress)
        return target, "downloaded"


def _is_good(path: Path, item: _Item) -> bool:
    try:
        verify_file(path, item.sha256, item.size)
        if item.spec is not None:
            with path.open("rb") as f:
                check_identifier(f.read(8), str(path))
    except ModelError as exc:
        log.warning("%s; fetching it again", exc.message)
        return False
    return True


@contextmanager
def _open_url(
    url: str, allow_loopback_http: bool, hint: str
) -> Iterator[tuple[Callable[[int], bytes], int | None]]:
    if not is_allowed_url(url, loopback_http=allow_loopback_http):
        raise FetchError(f"refusing to download {url}: only https:// URLs are allowed")
    request = urllib.request.Request(url, headers={"User-Agent": f"edgecam/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(f"cannot download {url} ({reason}); {hint}") from exc
    with response:
        if not is_allowed_url(response.geturl(), loopback_http=allow_loopback_http):
            raise FetchError(f"{url} redirected to {response.geturl()}: only https:// is allowed")
        length = response.headers.get("Content-Length")
        yield response.read, int(length) if length and length.isdigit() else None


def _install(
    read: Callable[[int], bytes],
    total: int | None,
    target: Path,
    item: _Item,
    origin: str,
    *,
    progress: bool,
) -> None:
    """Stream into a temp file next to ``target``, check it, then rename: never a half file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, got = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, _progress(total, target.name, progress) as bar:
            while True:
                try:
                    chunk = read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise FetchError(f"{origin}: transfer failed after {got} bytes: {exc}") from exc
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                bar(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        _check_download(origin, got, total, item, digest.hexdigest())
        if item.spec is not None:
            with tmp.open("rb") as f:
                check_identifier(f.read(8), origin)
        tmp.chmod(0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_download(origin: str, got: int, total: int | None, item: _Item, digest: str) -> None:
    expected = total if total is not None else item.size
    if expected is not None and got != expected:
        raise FetchError(
            f"{origin}: got {got} of {expected} bytes (connection closed early?), nothing saved",
            hint="try again",
        )
    if item.size is not None and got != item.size:
        raise FetchError(f"{origin}: {got} bytes, manifest expects {item.size}; nothing saved")
    if item.sha256 is not None and digest != item.sha256:
        raise FetchError(
            f"{origin}: sha256 {digest}, expected {item.sha256}; nothing saved",
            hint="the source serves a different file; fetch from the official URL",
        )


@contextmanager
def _progress(total: int | None, name: str, enabled: bool) -> Iterator[Callable[[int], object]]:
    if not (enabled and sys.stderr.isatty()):
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name) as bar:
        yield bar.update
