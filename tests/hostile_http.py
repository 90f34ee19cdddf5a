#!/usr/bin/env python3
"""A hostile HTTP server for the remote-image tests (stdlib only).

    hostile_http.py PORT OTHER_PORT [TLS_PORT CERT KEY]

Serves one image (4 MiB, byte i = i % 251) on 127.0.0.1 under /CASE/NAME,
where CASE picks how the server misbehaves (see CASES). OTHER_PORT is a
second origin: redirects to it test that credentials stay home. Every
request is logged on stdout, one line: "PORT PATH auth=yes|no range=R".
"""
import http.server
import os
import socketserver
import ssl
import sys
import threading
import time

SIZE = 4 << 20
IMAGE = bytes(i % 251 for i in range(251)) * (SIZE // 251 + 1)
IMAGE = IMAGE[:SIZE]
PORT, OTHER = int(sys.argv[1]), int(sys.argv[2])
TLS = int(sys.argv[3]) if len(sys.argv) > 5 else 0
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2b", "golden")

CASES = """
ok           a correct server
wrap         Content-Range total 2^64-1
huge         Content-Range total 1 PiB (over the 16 TiB limit)
star         Content-Range total '*'
junk         Content-Range 'bytes 0-0/4194304x'
norange      200 with the whole body, no Content-Range
otherstart   a 206 for another start than asked
short        reads after the probe: half the body, then the connection closes
flaky        like short, but only the first request of each range
badlength    reads after the probe: Content-Length says more than the range
drip         reads after the probe: one byte a second
slow         reads after the probe: answered after 2 s
stall        reads past byte 0 (not the probe, nor the kernel's partition
             scan): answered after 600 s
gate         the probe: answered once the file $UBLK_HOSTILE_GATE exists (at most 120 s)
golden       /golden/NAME: tests/e2b/golden/NAME instead of the image
etag         reads after the probe: another ETag
etagdrip     reads after the probe: another ETag, the body one byte a second
folded       reads after the probe: a 206 whose first header line is folded
             (starts with a space), which libcurl 7.88 appends to a freed
             header of the connection's previous answer
novalidator  no ETag (nor Last-Modified): nothing tells its versions apart
private      403 without 'Authorization: Bearer s3cret' or 'X-Api-Key: s3cret'
toother      302 to the same path under /private/ on OTHER_PORT
tofile       302 to file:///etc/passwd
toftp        302 to ftp://127.0.0.1/x
loop         302 to itself
chain        /chain/N redirects to /chain/N+1 up to 9, then serves
tohttp       (TLS port) 302 to http://127.0.0.1:PORT/ok/...
"""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cut_once = set()            # (path, range) that flaky has cut short
    cut_lock = threading.Lock()

    def log_message(self, *args):
        pass

    def redirect(self, where):
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        port = self.server.server_address[1]
        # libcurl itself drops Authorization on a redirect to another host,
        # but not a custom header: both count as credentials here
        auth = self.headers.get("Authorization") or self.headers.get("X-Api-Key")
        rng = self.headers.get("Range", "")
        print(f"{port} {self.path} auth={'yes' if auth else 'no'} range={rng}", flush=True)
        parts = self.path.split("/")
        case = parts[1] if len(parts) > 2 else ""
        first = last = None
        if rng.startswith("bytes="):
            a, b = rng[6:].split("-")
            first, last = int(a), min(int(b), SIZE - 1)
        probe = first == 0 and last == 0
        etag = '"v1"'

        if case == "loop":
            return self.redirect(self.path)
        if case == "chain":
            n = int(parts[2])
            if n < 9:
                return self.redirect(f"/chain/{n + 1}/img")
        if case == "toother":
            return self.redirect(f"http://127.0.0.1:{OTHER}/private/img")
        if case == "tofile":
            return self.redirect("file:///etc/passwd")
        if case == "toftp":
            return self.redirect("ftp://127.0.0.1/x")
        if case == "tohttp":
            return self.redirect(f"http://127.0.0.1:{PORT}/ok/img")
        if case == "private" and auth not in ("Bearer s3cret", "s3cret"):
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if case in ("etag", "etagdrip") and not probe:
            etag = '"v2"'
        if case == "slow" and not probe:
            time.sleep(2)
        if case == "stall" and first:
            time.sleep(600)
        if case == "gate" and probe:
            gate = os.environ.get("UBLK_HOSTILE_GATE", "")
            for _ in range(2400):
                if gate and os.path.exists(gate):
                    break
                time.sleep(0.05)
        image, size = IMAGE, SIZE
        if case == "golden":
            name = os.path.basename(parts[2].split("?")[0])
            with open(os.path.join(GOLDEN, name), "rb") as f:
                image = f.read()
            size = len(image)
            if last is not None:
                last = min(last, size - 1)
        if first is None or case == "norange":
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            if case != "novalidator":
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(image)
            return
        body = image[first:last + 1]
        total = {"wrap": str(2**64 - 1), "huge": str(2**50), "star": "*",
                 "junk": f"{SIZE}x"}.get(case, str(size))
        shown = (first + 4096, last + 4096) if case == "otherstart" else (first, last)
        if case == "folded" and not probe:
            try:    # libcurl before 8.3 hangs up at the folded line
                self.wfile.write(b"HTTP/1.1 206 Partial Content\r\n x-folded: y\r\n")
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {shown[0]}-{shown[1]}/{total}")
        length = len(body) + (100 if case == "badlength" and not probe else 0)
        self.send_header("Content-Length", str(length))
        if case != "novalidator":
            self.send_header("ETag", etag)
        self.end_headers()
        if case == "flaky" and not probe:
            with Handler.cut_lock:
                case = "flaky" if (self.path, rng) in Handler.cut_once else "short"
                Handler.cut_once.add((self.path, rng))
        try:
            if case == "short" and not probe:
                self.wfile.write(body[:len(body) // 2])
                self.close_connection = True
            elif case == "badlength" and not probe:
                self.wfile.write(body)
                self.close_connection = True
            elif case in ("drip", "etagdrip") and not probe:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(1)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(port, tls=None):
    srv = Server(("127.0.0.1", port), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


serve(PORT)
serve(OTHER)
if TLS:
    serve(TLS, (sys.argv[4], sys.argv[5]))
print("ready", flush=True)
threading.Event().wait()
