"""The official zoo checkpoint: where it is served, what it must contain, and the checks.

Why pinned: a user's download is the only input the conversion cannot reproduce, and a
truncated data file, a different model or another release would otherwise turn into a
plausible-looking but wrong .tflite. What is pinned was measured on the release's real
small files (``assets/reference/README.md``): the sha256 of ``model.ckpt.index`` — which
itself holds the CRC32C of every tensor in the data file, checked by TensorFlow as it reads
each one — of ``pipeline.config`` and of ``model.ckpt.meta``, and the data file's size.
The tarball's own sha256 is documented by a third party (OpenVINO Open Model Zoo's
``models/public/ssdlite_mobilenet_v2/model.yml``, 51,025,348 bytes); it could not be checked
here, so a different tarball is reported, and its members decide.

Nothing here imports TensorFlow except :func:`check_tensors`: download and member checks fail
fast, before the slow part.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecam.errors import FetchError, ModelError
from edgecam.models import fetch
from edgecam.models.manifest import is_allowed_url
from tools._common import import_tf, sha256_file
from tools._ssd_model import Arch

log = logging.getLogger(__name__)

INDEX, DATA, META, CONFIG, STATE = (
    "model.ckpt.index",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.meta",
    "pipeline.config",
    "checkpoint",
)
REQUIRED = (INDEX, DATA, META, CONFIG)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Release:
    """One official model zoo tarball and the files inside it that the converter uses."""

    name: str
    folder: str
    arch: Arch
    url: str
    documented_url: str
    tarball_sha256: str
    tarball_size: int
    tarball_sha256_source: str
    member_sha256: dict[str, str]
    data_size: int
    manifest_name: str
    size: int

    @property
    def tarball_name(self) -> str:
        return f"{self.folder}.tar.gz"


RELEASES: dict[str, Release] = {
    "ssdlite_mobilenet_v2_coco": Release(
        name="ssdlite_mobilenet_v2_coco",
        folder="ssdlite_mobilenet_v2_coco_2018_05_09",
        arch="ssdlite_mobilenet_v2",
        # The same bucket as http://download.tensorflow.org/..., served over HTTPS.
        url="https://storage.googleapis.com/download.tensorflow.org/models/object_detection/"
        "ssdlite_mobilenet_v2_coco_2018_05_09.tar.gz",
        documented_url="http://download.tensorflow.org/models/object_detection/"
        "ssdlite_mobilenet_v2_coco_2018_05_09.tar.gz",
        tarball_sha256="542445cce834dbfbb7df1991425d475e85a2d7ec68c60a4f262bb18aac10c8b2",
        tarball_size=51025348,
        tarball_sha256_source="openvinotoolkit/open_model_zoo "
        "models/public/ssdlite_mobilenet_v2/model.yml",
        member_sha256={
            INDEX: "2cefe97b549c23a9c915b5daa938781261f2123ec3e4ab50778bdd8445915445",
            CONFIG: "c3abeb4d05a033076e35be2f85470a65dabce17551679ee2eb7ad78032482570",
            META: "fcde3c5e63cdac6141ec42265ef9aa38480c98bf32ceb0960119fd6aff018191",
        },
        data_size=18205188,
        manifest_name="ssdlite_v2",
        size=300,
    ),
}


@dataclass(frozen=True)
class Verification:
    """What was checked, for the log, the manifest entry and the fidelity report."""

    release: str
    index_sha256: str
    tensors: int
    tarball_sha256: str | None = None
    tarball_is_documented: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "index_sha256": self.index_sha256,
            "tensors_crc_checked": self.tensors,
            "tarball_sha256": self.tarball_sha256,
            "tarball_is_documented": self.tarball_is_documented,
        }


# ---- getting the tarball ------------------------------------------------------------------


def download(release: Release, url: str, cache: Path, *, progress: bool = True) -> Path:
    """The tarball, downloaded into ``cache``; a file already there is reused only when it
    is the documented tarball (anything else is fetched again)."""
    if not is_allowed_url(url, loopback_http=True):
        raise FetchError(
            f"refusing to download {url}: only https:// URLs (or http:// to this machine)"
        )
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create download directory {cache}: {exc.strerror}") from exc
    target = cache / release.tarball_name
    if target.is_file() and sha256_file(target) == release.tarball_sha256:
        log.info("using %s (sha256 matches the documented release)", target)
        return target
    fetch.download(
        url,
        target,
        sha256=None,  # tarball_note reports its hash; verify() checks every member
        size=None,
        allow_loopback_http=True,
        progress=progress,
        hint=f"no network? fetch {release.tarball_name} on a machine that has it and pass"
        " --tarball FILE",
    )
    return target


def tarball_note(release: Release, tarball: Path) -> tuple[str, bool]:
    """(sha256, whether it is the documented tarball). A different tarball is not refused
    here: its members decide, and the verification line says which case it was."""
    digest = sha256_file(tarball)
    return digest, digest == release.tarball_sha256


def unpack(release: Release, tarball: Path, dest: Path) -> Path:
    """Extract the checkpoint's files (and nothing else) from the tarball into ``dest``."""
    wanted = {f"{release.folder}/{name}": name for name in (*REQUIRED, STATE)}
    found: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                key = member.name.removeprefix("./")
                if key in wanted:
                    if not member.isreg():
                        raise ModelError(f"{tarball}: {key} is not a regular file")
                    found[wanted[key]] = member
            missing = [n for n in REQUIRED if n not in found]
            if missing:
                raise ModelError(
                    f"{tarball}: no {release.folder}/{missing[0]}: not the "
                    f"{release.tarball_name} release",
                    f"download {release.url}",
                )
            for name, member in found.items():
                source = tar.extractfile(member)
                if source is None:
                    raise ModelError(f"{tarball}: cannot read {member.name}")
                with source, (dest / name).open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"{tarball}: not a complete .tar.gz ({first})",
            "the download is truncated or not the release tarball; fetch it again",
        ) from exc
    return dest


# ---- checking a checkpoint ----------------------------------------------------------------


def identify(checkpoint_dir: Path) -> Release | None:
    """The release whose pinned index this directory holds, if any."""
    index = checkpoint_dir / INDEX
    if not index.is_file():
        return None
    digest = sha256_file(index)
    return next((r for r in RELEASES.values() if r.member_sha256[INDEX] == digest), None)


def verify(release: Release, checkpoint_dir: Path) -> Verification:
    """Refuse (ModelError, one line) anything but the release's exact files."""
    for name in REQUIRED:
        if not (checkpoint_dir / name).is_file():
            raise ModelError(
                f"{checkpoint_dir}: no {name}",
                f"the {release.folder} checkpoint has {', '.join(REQUIRED)}",
            )
    for name, want in release.member_sha256.items():
        path = checkpoint_dir / name
        got = sha256_file(path)
        if got != want:
            raise ModelError(
                f"{path}: sha256 {got} is not the {release.folder} release's {want}: "
                "a different model or another release",
                "download the official tarball again, or pass --own-checkpoint "
                "for a checkpoint of your own",
            )
    data = checkpoint_dir / DATA
    size = data.stat().st_size
    if size != release.data_size:
        raise ModelError(
            f"{data}: {size} bytes, the {release.folder} release's is {release.data_size}",
            "truncated or incomplete download; fetch the tarball again",
        )
    tensors = check_tensors(checkpoint_dir / "model.ckpt")
    return Verification(release.name, release.member_sha256[INDEX], tensors)


def check_tensors(prefix: Path) -> int:
    """Read every tensor once: TensorFlow checks each against the CRC32C in the index."""
    tf = import_tf()
    data = Path(f"{prefix}.data-00000-of-00001")
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        names = sorted(reader.get_variable_to_shape_map())
    except Exception as exc:  # NotFoundError, DataLossError, ...
        raise ModelError(f"cannot read checkpoint {prefix}: {_first_line(exc)}") from exc
    for name in names:
        try:
            reader.get_tensor(name)
        except Exception as exc:  # DataLossError (checksum), OutOfRangeError (truncated)
            raise ModelError(
                f"{data}: tensor {name} does not match the index ({_first_line(exc)})",
                "the data file is corrupt, truncated or from another checkpoint",
            ) from exc
    log.info("checkpoint %s: %d tensors read, every CRC32C matches its index", prefix, len(names))
    return len(names)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
