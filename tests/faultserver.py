"""A real threaded HTTP server on 127.0.0.1 that misbehaves on request, for the acquisition tests.

Each file has a queue of fault modes, consumed one per request; when the
queue is empty the server's default mode applies. Modes:

  ok              serve the file, honouring ``Range`` (206)
  ignore-range    always 200 with the whole file
  status:N        answer HTTP N (500, 503, 404, ...) with a short text body
  429             answer 429 with ``Retry-After: <retry_after>``
  drop            send the headers and part of the body, then reset the connection (RST)
  close-early     correct Content-Length, part of the body, then a clean close (FIN)
  stall           send part of the body, then go silent for ``stall_seconds``
  stall-headers   go silent for ``stall_seconds`` before sending anything
  length:+N       declare a Content-Length N bytes too large (or -N too small), send the file, close
  corrupt         the right number of bytes, some of them flipped
  html            status 200, an HTML error page with Content-Type text/html
  html-as-binary  status 200, an HTML error page labelled application/octet-stream
  slow            honour Range but send at ``rate`` bytes/s (for the kill -9 demonstration)

Run as a script to serve a directory, e.g. slowly for a resume demonstration:
    python tests/faultserver.py --dir data/mirror/mnist --port 8765 --mode slow --rate 1000000
"""
from __future__ import annotations

import argparse
import hashlib
import re
import socket
import struct
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTML_PAGE = b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>Try later</body></html>\n"


@dataclass
class Hit:
    """One request as the server saw it (status 0: no answer was sent)."""

    time: float  # arrival, time.monotonic()
    path: str
    range: str | None
    mode: str
    status: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, fmt, *args):  # quiet in tests; the script prints its own line
        if self.server.owner.verbose:
            sys.stderr.write(f"faultserver: {self.address_string()} {fmt % args}\n")

    def do_GET(self):  # noqa: N802 - http.server's naming
        owner = self.server.owner
        name = self.path.lstrip("/").split("?")[0]
        data = owner.content(name)
        mode = owner.next_mode(name)
        hit = Hit(time.monotonic(), name, self.headers.get("Range"), mode, 0)
        owner.hits.append(hit)  # at arrival: a stalled request is visible while it stalls
        hit.status = self._serve(name, data, mode, hit.range)

    # Each branch answers one way; returns the status sent.
    def _serve(self, name: str, data: bytes | None, mode: str, rng: str | None) -> int:
        owner = self.server.owner
        if mode == "stall-headers":
            owner.released.wait(owner.stall_seconds)
            self.close_connection = True
            return 0
        if data is None:
            return self._simple(404, b"not found\n")
        if mode.startswith("status:"):
            return self._simple(int(mode.split(":")[1]), b"server error\n")
        if mode == "429":
            return self._simple(429, b"slow down\n", {"Retry-After": str(owner.retry_after)})
        if mode in ("html", "html-as-binary"):
            kind = "text/html; charset=utf-8" if mode == "html" else "application/octet-stream"
            return self._simple(200, HTML_PAGE, {"Content-Type": kind})
        if mode == "corrupt":
            body = bytearray(data)
            for i in range(len(body) // 3, len(body), max(1, len(body) // 7)):
                body[i] ^= 0xFF
            return self._simple(200, bytes(body), {"Content-Type": "application/octet-stream"})
        if mode.startswith("length:"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) + int(mode.split(":")[1])))
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True
            return 200

        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if_range = self.headers.get("If-Range")
        if match and mode != "ignore-range" and if_range in (None, owner.etag(name)):
            start = int(match.group(1))
            if start >= len(data):
                return self._simple(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", owner.etag(name))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = int(len(body) * owner.cut)
        try:
            if mode == "drop":
                self.wfile.write(body[:cut])
                # SO_LINGER 0: close() sends RST, a connection dropped mid-body.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            elif mode == "close-early":
                self.wfile.write(body[:cut])
                self.connection.shutdown(socket.SHUT_RDWR)
            elif mode == "stall":
                self.wfile.write(body[:cut])
                owner.released.wait(owner.stall_seconds)
            elif mode == "slow":
                step = 64 * 1024
                for i in range(0, len(body), step):
                    t0 = time.monotonic()
                    self.wfile.write(body[i:i + step])
                    time.sleep(max(0.0, step / owner.rate - (time.monotonic() - t0)))
            else:
                self.wfile.write(body)
        except OSError:
            pass  # the client went away (e.g. killed mid-transfer)
        if mode != "ok" and mode != "ignore-range":
            self.close_connection = True
        return 206 if start else 200

    def _simple(self, status: int, body: bytes, headers: dict | None = None) -> int:
        self.send_response(status)
        headers = {"Content-Type": "text/plain", **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "FaultServer"


class FaultServer:
    """Serve ``files`` (name -> bytes, or a directory) on 127.0.0.1 with scripted faults.

    Use as a context manager; ``url`` is the mirror base URL; ``plan(name, *modes)``
    queues modes for the next requests of ``name``; ``hits`` records every request.
    """

    def __init__(self, files: dict[str, bytes] | Path, *, port: int = 0, mode: str = "ok",
                 cut: float = 0.5, stall_seconds: float = 5.0, retry_after: float = 1,
                 rate: float = 1e6, verbose: bool = False):
        self.files = files
        self.default_mode = mode
        self.cut = cut
        self.stall_seconds = stall_seconds
        self.retry_after = retry_after
        self.rate = rate
        self.verbose = verbose
        self.hits: list[Hit] = []
        self.released = threading.Event()  # set on stop, so stalled handlers end at once
        self._plans: dict[str, deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def content(self, name: str) -> bytes | None:
        if isinstance(self.files, dict):
            return self.files.get(name)
        path = Path(self.files) / name
        return path.read_bytes() if "/" not in name and path.is_file() else None

    def etag(self, name: str) -> str:
        data = self.content(name) or b""
        return f'"{hashlib.md5(data).hexdigest()[:16]}"'  # stable across restarts, as a real server's

    def plan(self, name: str, *modes: str) -> None:
        with self._lock:
            self._plans[name].extend(modes)

    def next_mode(self, name: str) -> str:
        with self._lock:
            queue = self._plans[name]
            return queue.popleft() if queue else self.default_mode

    def hits_for(self, name: str) -> list[Hit]:
        return [h for h in self.hits if h.path == name]

    def start(self) -> "FaultServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="directory whose files are served")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--mode", default="ok", help="default fault mode (see the module docstring)")
    parser.add_argument("--rate", type=float, default=1e6, help="bytes/s in mode 'slow'")
    args = parser.parse_args()
    server = FaultServer(args.dir, port=args.port, mode=args.mode, rate=args.rate, verbose=True)
    print(f"serving {args.dir} at {server.url} in mode {args.mode!r}", flush=True)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
