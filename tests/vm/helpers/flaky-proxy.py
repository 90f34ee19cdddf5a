#!/usr/bin/env python3
"""HTTP proxy for tests: answers the first N GET requests with 500, then
forwards requests (with their Range header) to the upstream server.
Usage: flaky-proxy.py PORT UPSTREAM_BASE_URL FAILURES"""
import http.server
import sys
import urllib.request

port, upstream, failures = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
count = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global count
        count += 1
        if count <= failures:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = urllib.request.Request(upstream + self.path)
        if "Range" in self.headers:
            req.add_header("Range", self.headers["Range"])
        with urllib.request.urlopen(req) as r:
            body = r.read()
            self.send_response(r.status)
            for k in ("Content-Range", "ETag", "Last-Modified"):
                if r.headers.get(k):
                    self.send_header(k, r.headers[k])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%d %s\n" % (count, fmt % args))


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
