"""Fetching models and labels, from a local mirror and over HTTP from a real server on
127.0.0.1 serving the asset files. The server can also cut the body short or serve altered
bytes; whatever goes wrong, the destination holds either the verified file or nothing (no
half file, no leftover temp file)."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecam.errors import FetchError, ModelError
from edgecam.models import fetch as fetch_mod
from edgecam.models.fetch import fetch
from edgecam.models.files import resolve_model
from tests.support.model_dirs import isolate_models

SSD = "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite"
MNV2 = "mobilenet_v2_1.0_224_quant.tflite"
TINY = "mobilenet_v1_0.25_128_quant.tflite"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_models(monkeypatch, tmp_path)


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- mirror -------------------------------------------------------------------------------


def test_mirror_copies_model_and_labels_then_is_a_noop(assets: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    first = fetch("mobilenet_v2", dest=dest, mirror=assets / "models", progress=False)
    assert (first.action, first.label_action) == ("copied", "copied")
    assert first.path.read_bytes() == (assets / "models" / MNV2).read_bytes()
    assert first.label_path == dest / "imagenet_labels.txt"
    assert first.label_path.read_bytes() == (assets / "labels" / "imagenet_labels.txt").read_bytes()
    assert _files(dest) == ["imagenet_labels.txt", MNV2]
    again = fetch("mobilenet_v2", dest=dest, mirror=assets / "models", progress=False)
    assert (again.action, again.label_action) == ("present", "present")


def test_mirror_from_environment_into_default_dir(
    monkeypatch: pytest.MonkeyPatch, assets: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGECAM_MODEL_MIRROR", str(assets / "models"))
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(tmp_path / "a"))
    path = fetch("ssd_mobilenet_v1", progress=False).path
    assert path == tmp_path / "a" / SSD
    assert _files(tmp_path / "a") == ["coco_labels.txt", SSD]
    resolved = resolve_model("ssd_mobilenet_v1")
    assert resolved.verified and resolved.label_path == tmp_path / "a" / "coco_labels.txt"


def test_file_present_on_the_search_path_is_not_fetched_again(
    monkeypatch: pytest.MonkeyPatch, assets: Path
) -> None:
    monkeypatch.setenv("EDGECAM_MODELS_DIR", str(assets / "models"))
    outcome = fetch("mobilenet_v2", progress=False)
    assert outcome.action == "present" and outcome.path == assets / "models" / MNV2
    assert outcome.label_action == "present"


def test_mirror_may_use_the_upstream_file_name_and_a_labels_subdir(
    assets: Path, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "labels").mkdir(parents=True)
    shutil.copy(
        assets / "models" / "mobilenet_v1_0.25_224_float.tflite",
        mirror / "mobilenet_v1_0.25_224_1_default_1.tflite",
    )
    shutil.copy(assets / "labels" / "imagenet_labels.txt", mirror / "labels")
    dest = tmp_path / "dest"
    path = fetch("mobilenet_v1_0.25_224_float", dest=dest, mirror=mirror, progress=False).path
    assert path == dest / "mobilenet_v1_0.25_224_float.tflite"
    assert _sha(path) == _sha(assets / "models" / "mobilenet_v1_0.25_224_float.tflite")


def test_mirror_without_the_file(assets: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match=f"{MNV2} is not in the mirror"):
        fetch("mobilenet_v2", dest=dest, mirror=tmp_path / "nothing", progress=False)
    assert _files(dest) == []


def test_truncated_file_in_mirror_leaves_nothing(assets: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = (assets / "models" / TINY).read_bytes()
    (mirror / TINY).write_bytes(data[:1000])
    dest = tmp_path / "dest"
    with pytest.raises(
        FetchError, match=f"1000 bytes, manifest expects {len(data)}; nothing saved"
    ):
        fetch("mobilenet_v1_0.25_128", dest=dest, mirror=mirror, progress=False)
    assert _files(dest) == []


def test_corrupt_file_in_dest_is_replaced(
    assets: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / TINY).write_bytes(b"garbage")
    outcome = fetch("mobilenet_v1_0.25_128", dest=dest, mirror=assets / "models", progress=False)
    assert outcome.action == "copied" and _sha(outcome.path) == _sha(assets / "models" / TINY)
    assert "fetching it again" in caplog.text


def test_ssdlite_has_nothing_to_download(assets: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no prebuilt int8 download, build it"):
        fetch("ssdlite_v2", dest=tmp_path / "dest", progress=False)
    with pytest.raises(FetchError, match=r"ssdlite_mobilenet_v2_coco_300_int8\.tflite is not in"):
        fetch("ssdlite_v2", dest=tmp_path / "dest", mirror=assets / "models", progress=False)


def test_interrupt_during_copy_removes_the_temp_file(assets: Path, tmp_path: Path) -> None:
    source = (assets / "models" / TINY).open("rb")
    calls = 0

    def read_then_interrupt(n: int) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return source.read(n)

    item = fetch_mod._Item(TINY, None, None, None, None)
    dest = tmp_path / "dest"
    with source, pytest.raises(KeyboardInterrupt):
        fetch_mod._install(read_then_interrupt, None, dest / TINY, item, "test", progress=False)
    assert calls == 3 and _files(dest) == []


# ---- HTTP on loopback -----------------------------------------------------------------------


class _AssetHandler(http.server.BaseHTTPRequestHandler):
    """GET /<mode>/<path under assets>: mode ok | truncated (half the announced body) |
    altered (one byte flipped, same length)."""

    root: Path

    def do_GET(self) -> None:
        mode, _, rel = self.path.lstrip("/").partition("/")
        path = self.root / rel
        if not path.is_file() or mode not in ("ok", "truncated", "altered"):
            self.send_error(404)
            return
        data = bytearray(path.read_bytes())
        if mode == "altered":
            data[len(data) // 2] ^= 0x01
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(bytes(data[: len(data) // 2] if mode == "truncated" else data))
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def server(assets: Path) -> Iterator[str]:
    handler = type("Handler", (_AssetHandler,), {"root": assets})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _manifest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, assets: Path, base: str, mode: str
) -> None:
    """A manifest entry `loop` whose downloads point at the test server."""
    model, labels = assets / "models" / TINY, assets / "labels" / "imagenet_labels.txt"
    path = tmp_path / "loop.toml"
    path.write_text(
        f"""
[labels.loop_imagenet]
file = "imagenet_labels.txt"
url = "{base}/{mode}/labels/imagenet_labels.txt"
sha256 = "{_sha(labels)}"
size = {labels.stat().st_size}

[models.loop]
task = "classification"
file = "{TINY}"
url = "{base}/{mode}/models/{TINY}"
sha256 = "{_sha(model)}"
size = {model.stat().st_size}
input = {{ width = 128, height = 128 }}
labels = "loop_imagenet"
"""
    )
    monkeypatch.setenv("EDGECAM_MANIFEST", str(path))


def test_http_download_model_and_labels(
    monkeypatch: pytest.MonkeyPatch, assets: Path, tmp_path: Path, server: str
) -> None:
    _manifest(monkeypatch, tmp_path, assets, server, "ok")
    dest = tmp_path / "dest"
    outcome = fetch("loop", dest=dest, progress=False, allow_loopback_http=True)
    assert (outcome.action, outcome.label_action) == ("downloaded", "downloaded")
    assert outcome.path.read_bytes() == (assets / "models" / TINY).read_bytes()
    assert _files(dest) == ["imagenet_labels.txt", TINY]
    assert (outcome.path.stat().st_mode & 0o777) == 0o644
    assert resolve_model("loop", models_dir=dest).verified


def test_plain_http_is_refused_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, assets: Path, tmp_path: Path, server: str
) -> None:
    _manifest(monkeypatch, tmp_path, assets, server, "ok")
    with pytest.raises(FetchError, match="only https:// URLs are allowed"):
        fetch("loop", dest=tmp_path / "dest", progress=False)
    assert _files(tmp_path / "dest") == []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("truncated", r"got \d+ of \d+ bytes .* nothing saved"),
        ("altered", r"sha256 [0-9a-f]{64}, expected [0-9a-f]{64}; nothing saved"),
        ("missing", "HTTP 404"),
    ],
)
def test_bad_downloads_leave_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
    assets: Path,
    *,
    tmp_path: Path,
    server: str,
    mode: str,
    expected: str,
) -> None:
    _manifest(monkeypatch, tmp_path, assets, server, mode)
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match=expected):
        fetch("loop", dest=dest, progress=False, allow_loopback_http=True)
    assert _files(dest) == []


def test_offline_error_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, assets: Path, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port nobody listens on: connection refused, like no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _manifest(monkeypatch, tmp_path, assets, f"https://127.0.0.1:{port}", "ok")
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as info:
        fetch("loop", dest=dest, progress=False)
    message = str(info.value)
    assert f"cannot download https://127.0.0.1:{port}/ok/models/{TINY}" in message
    assert "no network?" in message and str(dest) in message
    assert "--from DIR / EDGECAM_MODEL_MIRROR" in message
    assert _files(dest) == []
