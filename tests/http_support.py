"""A loopback HTTP file server for the download tests: honours Range requests (or not), can cut a
body short or answer 503 first, and logs every request's path and Range header."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    """Serves `files` (path -> bytes) on 127.0.0.1 until closed (or the `with` block ends)."""

    def __init__(self, files: dict[str, bytes] | None = None, ranges: bool = True) -> None:
        self.files = dict(files or {})
        self.ranges = ranges
        self.cut_after: int | None = None  # send only this many body bytes once, then drop the connection
        self.failures = 0  # answer this many requests with 503 first
        self.requests: list[tuple[str, str | None]] = []
        self.clients: list[str | None] = []  # the User-Agent header of every request
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                header = self.headers.get("Range")
                server.requests.append((self.path, header))
                server.clients.append(self.headers.get("User-Agent"))
                if server.failures:
                    server.failures -= 1
                    self.send_error(503)
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if header and server.ranges:
                    start = int(header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if server.cut_after is not None:
                    payload, server.cut_after = payload[: server.cut_after], None
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
