#!/usr/bin/env python3
"""The exit codes are one contract told in four places: exitcodes.h (the
source), docs/exit-codes.md, each tool's --help and its man page's EXIT
STATUS. Fails, naming the place, when they disagree.

check-exit-codes.py TOP BIN"""
import re
import subprocess
import sys

top, bindir = sys.argv[1], sys.argv[2]
tools = ["ublk-add", "ublk-serve", "ublk-del", "ublk-export-diff", "ublk-pool"]
errors = []

enum = open(f"{top}/common/util/exitcodes.h").read()
codes = {int(v): n for n, v in re.findall(r"\bEXIT_([A-Z_]+) = (\d+),", enum)}
if sorted(codes) != list(range(len(codes))):
    errors.append(f"exitcodes.h: codes are not 0..N: {sorted(codes)}")

doc = open(f"{top}/docs/exit-codes.md").read()
documented = {int(c) for c in re.findall(r"^\| *(\d+) *\|", doc, re.M)}
if documented != set(codes):
    errors.append(f"docs/exit-codes.md lists {sorted(documented)}, exitcodes.h has {sorted(codes)}")

for tool in tools:
    out = subprocess.run([f"{bindir}/{tool}", "--help"], capture_output=True, text=True).stdout
    m = re.search(r"^Exit codes:(.*?)(?:\n\n|\Z)", out, re.M | re.S)
    if not m:
        errors.append(f"{tool} --help: no 'Exit codes:' paragraph")
        continue
    in_help = {int(c) for c in re.findall(r"(?:^|[ ,:])(\d) [a-z]", m.group(1).replace("\n", " "))}
    page = open(f"{top}/man/{tool}.8").read()
    sec = re.search(r"^\.SH EXIT STATUS\n(.*?)(?=^\.SH )", page, re.M | re.S)
    if not sec:
        errors.append(f"man/{tool}.8: no EXIT STATUS section")
        continue
    in_man = {int(c) for c in re.findall(r"^\.B (\d+)$", sec.group(1), re.M)}
    for where, got in ((f"{tool} --help", in_help), (f"man/{tool}.8 EXIT STATUS", in_man)):
        unknown = got - set(codes)
        if unknown:
            errors.append(f"{where}: codes exitcodes.h does not have: {sorted(unknown)}")
    if in_help != in_man:
        errors.append(f"{tool}: --help says {sorted(in_help)}, its man page {sorted(in_man)}")

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
