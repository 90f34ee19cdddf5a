#!/usr/bin/python3
"""An independent reader and template writer of E2B builds, for the tests.

Written from the format as e2b-dev/infra defines it (docs/e2b.md), in
Python with Debian's python3-zstandard and python3-lz4, and sharing no
code with ublk-tools: the VM suite checks our writer's builds with this
reader, and our reader against builds this script writes.

    e2b_ref.py template ROOT IMAGE ID [--layout 3|4|5] [--codec none|zstd|lz4]
                        [--frame-size BYTES] [--name rootfs.ext4] [--empty-mapping]
        Write IMAGE as a generation-0 build ID under ROOT: its data file
        and a header mapping the whole device to it.
    e2b_ref.py flatten ROOT ID OUT [--name rootfs.ext4]
        Validate build ID's header as E2B does (and stricter: coverage),
        read every range through the builds it names (decompressing and
        checking frames), check recorded SHA-256s, write the device to OUT.
    e2b_ref.py describe ROOT ID [--name rootfs.ext4]
        The header as JSON: layout, generation, build and base ids, the
        builds it references, its entries.

Exit status 0, or 1 with the reason on stderr.
"""
import hashlib
import json
import os
import struct
import sys
import uuid

import lz4.frame
import zstandard

PAGE = 4096
NONE, ZSTD, LZ4 = 0, 1, 2
SUFFIX = {NONE: "", ZSTD: ".zstd", LZ4: ".lz4"}
NIL = bytes(16)


class Bad(Exception):
    pass


def uvarint(buf, pos):
    shift = value = 0
    for i in range(10):
        if pos >= len(buf):
            raise Bad("varint truncated")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise Bad("varint too long")


def svarint(buf, pos):
    u, pos = uvarint(buf, pos)
    return (u >> 1) ^ -(u & 1), pos


def put_uvarint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def put_svarint(v):
    return put_uvarint((v << 1) ^ (v >> 63) if v < 0 else v << 1)


def parse_header(raw):
    if len(raw) < 64:
        raise Bad("header shorter than 64 bytes")
    version, bsize, size, gen = struct.unpack_from("<QQQQ", raw, 0)
    h = {"version": version, "layout": version & 0xFFFF, "block_size": bsize, "size": size,
         "generation": gen, "build_id": raw[32:48], "base_build_id": raw[48:64], "builds": {}}
    layout = h["layout"]
    entries = []
    if layout in (1, 2, 3):
        body = raw[64:]
        if len(body) % 40:
            raise Bad("entries are not whole")
        for i in range(0, len(body), 40):
            off, length = struct.unpack_from("<QQ", body, i)
            entries.append((off, length, body[i + 16:i + 32], struct.unpack_from("<Q", body, i + 32)[0]))
    elif layout in (4, 5):
        if len(raw) < 69:
            raise Bad("no section")
        flags = raw[64]
        usize = struct.unpack_from("<I", raw, 65)[0]
        sec = lz4.frame.decompress(raw[69:])
        if len(sec) != usize:
            raise Bad("section is %d bytes, header says %d" % (len(sec), usize))
        h["flags"] = flags
        pos = 0
        (nb,) = struct.unpack_from("<I", sec, pos)
        pos += 4
        for _ in range(nb):
            bid = sec[pos:pos + 16]
            fsize = struct.unpack_from("<q", sec, pos + 16)[0]
            sha = sec[pos + 24:pos + 56]
            codec, nf = struct.unpack_from("<II", sec, pos + 56)
            pos += 64
            frames = []
            for _ in range(nf):
                frames.append(struct.unpack_from("<qqii", sec, pos))
                pos += 24
            h["builds"][bid] = {"size": fsize, "sha256": sha, "codec": codec, "frames": frames}
        if layout == 4:
            (n,) = struct.unpack_from("<I", sec, pos)
            pos += 4
            for _ in range(n):
                off, length = struct.unpack_from("<QQ", sec, pos)
                entries.append((off, length, sec[pos + 16:pos + 32], struct.unpack_from("<Q", sec, pos + 32)[0]))
                pos += 40
        else:
            (m,) = struct.unpack_from("<I", sec, pos)
            pos += 4
            table = [sec[pos + 16 * k:pos + 16 * k + 16] for k in range(m)]
            pos += 16 * m
            (n,) = struct.unpack_from("<I", sec, pos)
            pos += 4
            cols = [[], [], [], []]
            for c in range(4):
                for _ in range(n):
                    v, pos = (svarint if c == 2 else uvarint)(sec, pos)
                    cols[c].append(v)
            off = stor = 0
            prev_end = 0
            for k in range(n):
                off += cols[0][k]
                stor += cols[2][k]
                start, length = off * PAGE, cols[1][k] * PAGE
                if start > prev_end:
                    entries.append((prev_end, start - prev_end, NIL, 0))
                entries.append((start, length, table[cols[3][k]], stor * PAGE))
                prev_end = start + length
            end = -(-size // PAGE) * PAGE
            if prev_end < end:
                entries.append((prev_end, end - prev_end, NIL, 0))
        if pos != len(sec):
            raise Bad("%d bytes left in the section" % (len(sec) - pos))
    else:
        raise Bad("layout %d is not 1-5" % layout)
    if not entries and layout != 5:
        entries = [(0, -(-size // PAGE) * PAGE, h["build_id"], 0)]
    expect = 0
    for i, (off, length, bid, stor) in enumerate(entries):
        if length == 0 or off % PAGE or length % PAGE or stor % PAGE:
            raise Bad("entry %d: zero or unaligned" % i)
        if off != expect:
            raise Bad("entry %d: offset %d, expected %d" % (i, off, expect))
        expect = off + length
    if expect < size or expect - size >= PAGE:
        raise Bad("mapping covers %d bytes, size is %d" % (expect, size))
    h["entries"] = entries
    return h


def read_header(root, bid, name):
    path = os.path.join(root, str(uuid.UUID(bytes=bid)), name + ".header")
    with open(path, "rb") as f:
        return parse_header(f.read())


class Build:
    """One build's data as E2B reads it: raw, or frames of its record in
    the top header."""

    def __init__(self, root, bid, name, record):
        self.codec = record["codec"] if record else NONE
        self.frames = record["frames"] if record else []
        path = os.path.join(root, str(uuid.UUID(bytes=bid)), name + SUFFIX[self.codec])
        if not os.path.exists(path):
            raise Bad("build %s: %s not found" % (uuid.UUID(bytes=bid), path))
        self.f = open(path, "rb")
        self.cache = {}

    def frame(self, k):
        if k not in self.cache:
            su, sc, zu, zc = self.frames[k]
            self.f.seek(sc)
            comp = self.f.read(zc)
            if len(comp) != zc:
                raise Bad("frame %d truncated" % k)
            if self.codec == ZSTD:
                out = zstandard.ZstdDecompressor().decompress(comp, max_output_size=zu)
            else:
                out = lz4.frame.decompress(comp)
            if len(out) != zu:
                raise Bad("frame %d: %d bytes, table says %d" % (k, len(out), zu))
            self.cache = {k: out}
        return self.cache[k]

    def read(self, off, length):
        if self.codec == NONE:
            self.f.seek(off)
            data = self.f.read(length)
            if len(data) != length:
                raise Bad("data file too short for %d+%d" % (off, length))
            return data
        out = bytearray()
        while length:
            k = next((i for i, fr in enumerate(self.frames) if fr[0] <= off < fr[0] + fr[2]), None)
            if k is None:
                raise Bad("offset %d is in no frame" % off)
            su = self.frames[k][0]
            piece = self.frame(k)[off - su:off - su + length]
            out += piece
            off += len(piece)
            length -= len(piece)
        return bytes(out)


def flatten(root, bid, out, name):
    h = read_header(root, bid, name)
    builds = {}
    missing = []
    for _, _, b, _ in h["entries"]:
        if b != NIL and b not in builds:
            try:
                builds[b] = Build(root, b, name, h["builds"].get(b))
            except Bad:
                missing.append(str(uuid.UUID(bytes=b)))
                builds[b] = None
    if missing:
        raise Bad("builds not found: " + ", ".join(missing))
    with open(out, "wb") as f:
        for off, length, b, stor in h["entries"]:
            length = min(length, h["size"] - off)
            f.write(bytes(length) if b == NIL else builds[b].read(stor, length))
    for b, rec in h["builds"].items():
        if rec["sha256"] != bytes(32) and b in builds and rec["codec"] == NONE:
            with open(builds[b].f.name, "rb") as f:
                if hashlib.sha256(f.read()).digest() != rec["sha256"]:
                    raise Bad("build %s: SHA-256 differs" % uuid.UUID(bytes=b))


def lz4_section(sec):
    return lz4.frame.compress(sec, block_size=lz4.frame.BLOCKSIZE_MAX4MB, block_checksum=True,
                              content_checksum=True, store_size=False)


def template(root, image, bid, layout, codec, frame_size, name, empty):
    with open(image, "rb") as f:
        data = f.read()
    size = len(data)
    d = os.path.join(root, str(uuid.UUID(bytes=bid)))
    os.makedirs(d, exist_ok=True)
    frames = []
    with open(os.path.join(d, name + SUFFIX[codec]), "wb") as f:
        if codec == NONE:
            f.write(data)
        else:
            pos_c = 0
            for su in range(0, size, frame_size):
                chunk = data[su:su + frame_size]
                if codec == ZSTD:
                    comp = zstandard.ZstdCompressor(write_checksum=True).compress(chunk)
                else:
                    comp = lz4.frame.compress(chunk, block_size=lz4.frame.BLOCKSIZE_MAX4MB,
                                              block_checksum=True, content_checksum=False)
                f.write(comp)
                frames.append((su, pos_c, len(chunk), len(comp)))
                pos_c += len(comp)
    if codec != NONE and layout < 4:
        raise Bad("a compressed build needs layout 4 or 5")
    meta = struct.pack("<QQQQ", layout, PAGE, size, 0) + bid + bid
    pages = -(-size // PAGE)
    if layout <= 3:
        body = b"" if empty else struct.pack("<QQ", 0, pages * PAGE) + bid + struct.pack("<Q", 0)
        hdr = meta + body
    else:
        sec = bytearray()
        if codec == NONE:
            sec += struct.pack("<I", 0)
        else:
            sec += struct.pack("<I", 1) + bid + struct.pack("<q", size) + hashlib.sha256(data).digest()
            sec += struct.pack("<II", codec, len(frames))
            for fr in frames:
                sec += struct.pack("<qqii", *fr)
        if layout == 4:
            sec += struct.pack("<I", 0) if empty else struct.pack("<IQQ", 1, 0, pages * PAGE) + bid + struct.pack("<Q", 0)
        else:
            sec += struct.pack("<I", 1) + bid + struct.pack("<I", 1)
            sec += put_uvarint(0) + put_uvarint(pages) + put_svarint(0) + put_uvarint(0)
        hdr = meta + struct.pack("<BI", 0, len(sec)) + lz4_section(bytes(sec))
    with open(os.path.join(d, name + ".header"), "wb") as f:
        f.write(hdr)


def describe(root, bid, name):
    h = read_header(root, bid, name)
    u = lambda b: str(uuid.UUID(bytes=b))
    refs = {}
    for off, length, b, stor in h["entries"]:
        key = "nil" if b == NIL else u(b)
        refs[key] = refs.get(key, 0) + length
    print(json.dumps({
        "layout": h["layout"], "version": h["version"], "block_size": h["block_size"],
        "size": h["size"], "generation": h["generation"], "build_id": u(h["build_id"]),
        "base_build_id": u(h["base_build_id"]), "bytes_by_build": refs,
        "records": {u(b): {"codec": r["codec"], "frames": len(r["frames"]), "size": r["size"]}
                    for b, r in h["builds"].items()},
        "entries": [[off, length, "nil" if b == NIL else u(b), stor] for off, length, b, stor in h["entries"]],
    }, sort_keys=True))


def main(argv):
    opts = {"--layout": "3", "--codec": "none", "--frame-size": str(2 << 20), "--name": "rootfs.ext4"}
    args, empty, i = [], False, 0
    while i < len(argv):
        if argv[i] == "--empty-mapping":
            empty = True
        elif argv[i] in opts:
            opts[argv[i]] = argv[i + 1]
            i += 1
        else:
            args.append(argv[i])
        i += 1
    name = opts["--name"]
    try:
        if args[:1] == ["template"] and len(args) == 4:
            codec = {"none": NONE, "zstd": ZSTD, "lz4": LZ4}[opts["--codec"]]
            template(args[1], args[2], uuid.UUID(args[3]).bytes, int(opts["--layout"]), codec,
                     int(opts["--frame-size"]), name, empty)
        elif args[:1] == ["flatten"] and len(args) == 4:
            flatten(args[1], uuid.UUID(args[2]).bytes, args[3], name)
        elif args[:1] == ["describe"] and len(args) == 3:
            describe(args[1], uuid.UUID(args[2]).bytes, name)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Bad, OSError, ValueError, struct.error, RuntimeError, zstandard.ZstdError) as e:
        print("e2b_ref: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
