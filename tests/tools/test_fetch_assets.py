"""`python -m tools.fetch_assets`: the test assets for people outside this workplace.

The network is absent here, so a loopback HTTP server plays GitHub: it serves a mirror built
from the shared assets under each manifest URL's host and path (the upstream BMPs of the PNG
copies are re-created from the PNG pixels, as lossless as the PNGs were made). The fetch code
is the real one (urllib, streaming, atomic rename, sha256). Checked: a full fetch gives
byte-identical files (pixel-identical for the converted PNGs) and a second run downloads
nothing; a corrupted or missing file on the server is an error that leaves nothing behind
while the other files still arrive; --from copies a folder; --check says what is missing and
the command to run; the manifest matches the assets the tests use, and every URL is pinned.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import pytest

from tools import fetch_assets
from tools._assets import AssetFile, decoded_pixels, load_manifest, problem, sha256_of
from tools._common import run_cli

ENTRIES = load_manifest()
PINNED = re.compile(r"^https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+$")


class Mirror:
    """A loopback HTTP server over a folder; counts the requests it answered."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def upstream_path(entry: AssetFile) -> Path:
    assert entry.url is not None
    parts = urlsplit(entry.url)
    return Path(str(parts.hostname)) / parts.path.lstrip("/")


@pytest.fixture
def mirror(tmp_path: Path, assets: Path) -> Iterator[Mirror]:
    root = tmp_path / "mirror"
    for entry in ENTRIES:
        if entry.url is None or entry.convert == "jpeg":
            continue
        target = root / upstream_path(entry)
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.convert == "png":  # upstream is a BMP; rebuild it from the PNG's pixels
            assert cv2.imwrite(str(target), cv2.imread(str(assets / entry.path)))
        else:
            target.write_bytes((assets / entry.path).read_bytes())
    server = Mirror(root)
    yield server
    server.close()


def leftovers(dest: Path) -> list[Path]:
    names = (".part", ".check")
    return [p for p in dest.rglob(".*") if p.name.endswith(names) or ".fetch-" in p.name]


def test_full_fetch_from_a_mirror_then_nothing_to_do(
    mirror: Mirror, tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "cache"
    assert fetch_assets.main(["--mirror-url", mirror.url, "--dest", str(dest)]) == 0
    required = [e for e in ENTRIES if not e.optional]
    for entry in required:
        got = dest / entry.path
        if entry.convert == "png":
            assert decoded_pixels(got.read_bytes()) == entry.pixels
            assert decoded_pixels((assets / entry.path).read_bytes()) == entry.pixels
        else:
            assert sha256_of(got) == entry.sha256 == sha256_of(assets / entry.path)
    assert not (dest / "images" / "astronaut.jpg").exists()  # optional: not without --all
    assert len(mirror.requests) == sum(1 for e in required if e.url)
    assert not leftovers(dest)
    out = capsys.readouterr().out
    assert "images/bird.png: downloaded" in out and "converted to PNG (pixels verified)" in out
    assert "expected_outputs.json: copied from the repository" in out

    mirror.requests.clear()
    assert fetch_assets.main(["--mirror-url", mirror.url, "--dest", str(dest)]) == 0
    assert mirror.requests == []
    assert fetch_assets.main(["--check", "--dest", str(dest)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(dest)


def test_a_bad_file_on_the_server_is_refused_and_the_rest_arrives(
    mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = next(e for e in ENTRIES if e.path.startswith("video/"))
    served = mirror.root / upstream_path(video)
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    served.write_bytes(bytes(data))
    bird = next(e for e in ENTRIES if e.path == "images/bird.png")
    (mirror.root / upstream_path(bird)).with_suffix(".bmp").unlink()  # 404
    dest = tmp_path / "cache"
    assert fetch_assets.main(["--mirror-url", mirror.url, "--dest", str(dest)]) == 1
    err = capsys.readouterr().err
    assert f"sha256 {sha256_of(served)}, expected {video.sha256}; nothing saved" in err
    assert "bird.bmp: HTTP 404" in err
    assert "2 file(s) not fetched" in err
    assert not (dest / video.path).exists() and not (dest / bird.path).exists()
    assert not leftovers(dest)
    assert (dest / "models" / "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.tflite").is_file()
    assert fetch_assets.main(["--check", "--dest", str(dest)]) == 1
    err = capsys.readouterr().err
    assert f"{video.path}: missing" in err and "fetch them: python -m tools.fetch_assets" in err


def test_copy_from_a_folder_verifies_every_file(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "cache"
    assert fetch_assets.main(["--from", str(assets), "--dest", str(dest), "--all"]) == 0
    for entry in ENTRIES:
        assert sha256_of(dest / entry.path) == entry.sha256
    broken = tmp_path / "broken"
    (broken / "labels").mkdir(parents=True)
    (broken / "labels" / "coco_labels.txt").write_text("person\n")
    assert fetch_assets.main(["--from", str(broken), "--dest", str(tmp_path / "c2")]) == 1
    err = capsys.readouterr().err
    assert "labels/coco_labels.txt" in err and "manifest says 661" in err


def test_refuses_plain_http_to_another_machine(tmp_path: Path) -> None:
    code = run_cli(
        fetch_assets.main, ["--mirror-url", "http://example.org/m", "--dest", str(tmp_path)]
    )
    assert code == 2 and not any(tmp_path.iterdir())


def test_the_manifest_matches_the_assets_in_use(assets: Path) -> None:
    for entry in ENTRIES:
        if entry.optional and not (assets / entry.path).exists():
            continue
        assert problem(assets, entry, deep=True) is None, entry.path


def test_every_download_is_pinned_to_a_commit() -> None:
    for entry in ENTRIES:
        assert entry.url is None or PINNED.match(entry.url), entry.path
        assert entry.licence
    assert {e.path for e in ENTRIES if e.bundled} == {"expected_outputs.json"}
