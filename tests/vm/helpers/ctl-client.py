#!/usr/bin/env python3
"""A client of a server's control socket (docs/state-dir.md, ctl).

ctl-client.py SOCKET LINE [--hold]: connect, send LINE, print the first
reply; with --hold, go on printing replies until the server closes the
connection (so a freeze is held until then, or until this is killed).
"""
import socket
import sys

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(60)
sock.connect(sys.argv[1])
sock.sendall(sys.argv[2].encode() + b"\n")
reader = sock.makefile("r")
hold = "--hold" in sys.argv[3:]
sock.settimeout(None if hold else 60)
for line in reader:
    print(line.rstrip("\n"), flush=True)
    if not hold:
        break
