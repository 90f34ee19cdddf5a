#!/usr/bin/env python3
"""Self-describing 4 KiB blocks for the host-crash test.

  blocks.py write DEV TAG FIRST COUNT [fsync]
      O_DIRECT-write blocks FIRST..FIRST+COUNT-1 of DEV with TAG's pattern
      (so each write reaches the ublk server before we go on); "fsync" then
      sends a FLUSH.
  blocks.py check DEV BASE FIRST-LAST=KIND[/KIND]...
      Classify every block of DEV as a known TAG's pattern, "base" (equal to
      BASE's block) or "garbage"; blocks in no listed range must be "base".
      Prints the count of each kind per range; exits 1 on any mismatch.
"""
import hashlib
import mmap
import os
import sys

BS = 4096
TAGS = ("G1", "G2")


def pattern(tag, blk):
    # a header naming the block, then filler derived from it: a block
    # written for another position or torn is recognisably wrong
    head = ("%s blk=%06d\n" % (tag, blk)).encode()
    fill = hashlib.sha256(head).digest() * (BS // 32)
    return (head + fill)[:BS]


def write(dev, tag, first, count, sync=False):
    chunk = 256  # blocks per write: 1 MiB
    buf = mmap.mmap(-1, chunk * BS)  # page aligned, as O_DIRECT needs
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    try:
        for start in range(first, first + count, chunk):
            n = min(chunk, first + count - start)
            buf.seek(0)
            for b in range(start, start + n):
                buf.write(pattern(tag, b))
            done = os.pwrite(fd, memoryview(buf)[: n * BS], start * BS)
            assert done == n * BS, "short write"
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def check(dev, base, specs):
    ranges = []  # (first, last, allowed kinds)
    for spec in specs:
        span, kinds = spec.split("=")
        first, last = (int(x) for x in span.split("-"))
        ranges.append((first, last, set(kinds.split("/"))))
    counts = {}
    bad = 0
    with open(dev, "rb") as d, open(base, "rb") as b:
        blk = 0
        while True:
            got = d.read(BS)
            if not got:
                break
            want_base = b.read(BS).ljust(len(got), b"\0")  # zeros past the base
            if got == want_base:
                kind = "base"
            else:
                kind = next((t for t in TAGS if got == pattern(t, blk)), "garbage")
            r = next((r for r in ranges if r[0] <= blk <= r[1]), None)
            key = "%d-%d" % r[:2] if r else "rest"
            allowed = r[2] if r else {"base"}
            counts.setdefault(key, {}).setdefault(kind, 0)
            counts[key][kind] += 1
            if kind not in allowed:
                bad += 1
                if bad <= 10:
                    print("block %d: %s, expected %s%s"
                          % (blk, kind, "/".join(sorted(allowed)),
                             " (starts %r)" % got[:16] if kind == "garbage" else ""))
            blk += 1
    for key, c in sorted(counts.items(), key=lambda kv: int(kv[0].split("-")[0]) if kv[0] != "rest" else 1 << 62):
        print("blocks %s: %s" % (key, ", ".join("%s %d" % kv for kv in sorted(c.items()))))
    if bad:
        print("%d blocks hold what they must not" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 5 and a[0] == "write":
        write(a[1], a[2], int(a[3]), int(a[4]), a[5:] == ["fsync"])
    elif len(a) >= 3 and a[0] == "check":
        sys.exit(check(a[1], a[2], a[3:]))
    else:
        sys.exit(__doc__)
