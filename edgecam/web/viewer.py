"""A headless viewer of the live page, for `edgecam bench --web`: the page's own traffic.

It asks for what an open Live tab asks for, at the same pace: a long-polled frame at most
``fps`` times a second, the objects list twice a second, stats and health every two seconds,
over one keep-alive connection. It runs as a separate process (like a browser on another
computer), so its own CPU is not counted as edgecam's. Standard library only, quick to start.

    python -m edgecam.web.viewer http://127.0.0.1:8080 --fps 5
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from urllib.parse import urlsplit


def view(base: str, fps: float, duration_s: float | None = None) -> int:
    """Watch until killed (or duration_s); returns the number of frames received."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=15)
    last, frames = -1, 0
    next_live = next_stats = 0.0
    started = time.monotonic()
    print("ready", flush=True)
    while duration_s is None or time.monotonic() - started < duration_s:
        began = time.monotonic()
        conn.request("GET", f"/api/frame.jpg?after={last}&wait=5")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status == 200 and body:
            last = int(resp.getheader("X-Frame-Seq") or last)
            frames += 1
        now = time.monotonic()
        for path, due, period in (("/api/live", next_live, 0.5), ("/api/stats", next_stats, 2.0)):
            if now >= due:
                conn.request("GET", path)
                conn.getresponse().read()
                if path == "/api/live":
                    next_live = now + period
                else:
                    conn.request("GET", "/api/health")
                    conn.getresponse().read()
                    next_stats = now + period
        wait = 1.0 / fps - (time.monotonic() - began)
        if wait > 0:
            time.sleep(wait)
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the page, e.g. http://127.0.0.1:8080")
    parser.add_argument("--fps", type=float, default=5.0, help="frames per second asked for")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    args = parser.parse_args(argv)
    try:
        frames = view(args.url, args.fps, args.duration)
    except (OSError, http.client.HTTPException) as exc:
        print(f"viewer: {exc}", file=sys.stderr)
        return 1
    print(f"frames {frames}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
