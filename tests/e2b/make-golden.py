#!/usr/bin/env python3
"""Write the golden E2B headers of tests/e2b/golden/ (docs/e2b.md).

Built by hand from the format as e2b-dev/infra defines it
(packages/shared/pkg/storage/header/: metadata.go, serialization_v3.go,
serialization_v4.go, serialization_v5.go; storage/compress_frame_table.go),
not with ublk-tools' own writer, so the reader is checked against the
format and not against itself. Python 3 standard library only: the LZ4
frame of V4/V5 is written here too (stored blocks, and one small greedy
block compressor), with the checksums E2B's writer asks for.

    tests/e2b/make-golden.py [DIR]     (default: tests/e2b/golden)

The output is deterministic; tests/host/e2b.bats checks that the committed
files are what this script writes. What each file should parse to, or the
exact error it must be refused with, is in tests/unit/test-e2b.c.
"""
import hashlib
import os
import struct
import sys
import uuid

P = 4096                    # E2B's PageSize: the unit of every mapping
MIB = 1 << 20
NIL = bytes(16)
ROOT = uuid.UUID("a0000000-0000-4000-8000-000000000001").bytes
GEN1 = uuid.UUID("b0000000-0000-4000-8000-000000000002").bytes
GEN2 = uuid.UUID("c0000000-0000-4000-8000-000000000003").bytes
OTHER = uuid.UUID("d0000000-0000-4000-8000-000000000004").bytes
NONE, ZSTD, LZ4 = 0, 1, 2

# ---- xxHash32 and the LZ4 frame format (lz4 doc/lz4_Frame_format.md) ----

M32 = 0xFFFFFFFF
P1, P2, P3, P4, P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393


def rotl(x, r):
    return ((x << r) | (x >> (32 - r))) & M32


def xxh32(data, seed=0):
    n, i = len(data), 0
    if n >= 16:
        v = [(seed + P1 + P2) & M32, (seed + P2) & M32, seed, (seed - P1) & M32]
        while i + 16 <= n:
            for k in range(4):
                lane = struct.unpack_from("<I", data, i + 4 * k)[0]
                v[k] = (rotl((v[k] + lane * P2) & M32, 13) * P1) & M32
            i += 16
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M32
    else:
        h = (seed + P5) & M32
    h = (h + n) & M32
    while i + 4 <= n:
        h = (rotl((h + struct.unpack_from("<I", data, i)[0] * P3) & M32, 17) * P4) & M32
        i += 4
    while i < n:
        h = (rotl((h + data[i] * P5) & M32, 11) * P1) & M32
        i += 1
    h ^= h >> 15
    h = (h * P2) & M32
    h ^= h >> 13
    h = (h * P3) & M32
    h ^= h >> 16
    return h


def lz4_lengths(n):
    """The extra length bytes after a token nibble of 15."""
    out = bytearray()
    n -= 15
    while n >= 255:
        out.append(255)
        n -= 255
    out.append(n)
    return out


def lz4_block(src):
    """A greedy LZ4 block compressor: 4-byte hash matches, the format's end
    rules (last 5 bytes literal, no match starting in the last 12)."""
    n, out, table, anchor, i = len(src), bytearray(), {}, 0, 0

    def seq(lit, off=None, mlen=0):
        tok = (min(len(lit), 15) << 4) | (min(mlen - 4, 15) if off else 0)
        out.append(tok)
        if len(lit) >= 15:
            out.extend(lz4_lengths(len(lit)))
        out.extend(lit)
        if off:
            out.extend(struct.pack("<H", off))
            if mlen - 4 >= 15:
                out.extend(lz4_lengths(mlen - 4))

    while i < n - 12:
        key = bytes(src[i:i + 4])
        cand = table.get(key)
        table[key] = i
        if cand is not None and i - cand <= 65535:
            mlen = 4
            while i + mlen < n - 5 and src[cand + mlen] == src[i + mlen]:
                mlen += 1
            seq(src[anchor:i], i - cand, mlen)
            i += mlen
            anchor = i
        else:
            i += 1
    seq(src[anchor:n])
    return bytes(out)


def lz4_frame(data, compress=False):
    """One LZ4 frame with the settings of E2B's compressLZ4: 4 MB blocks,
    block checksums, content checksum. Blocks are stored uncompressed
    (bit 31 of the block size) unless compress is asked and pays."""
    flg = 0x40 | 0x20 | 0x10 | 0x04     # version 01, independent blocks, both checksums
    bd = 0x70                           # 4 MB maximum block size
    out = bytearray(struct.pack("<I", 0x184D2204))
    out += bytes([flg, bd, (xxh32(bytes([flg, bd])) >> 8) & 0xFF])
    for k in range(0, len(data), 4 * MIB):
        chunk = data[k:k + 4 * MIB]
        packed = lz4_block(chunk) if compress else None
        if packed is not None and len(packed) < len(chunk):
            out += struct.pack("<I", len(packed)) + packed + struct.pack("<I", xxh32(packed))
        else:
            out += struct.pack("<I", len(chunk) | 0x80000000) + chunk
            out += struct.pack("<I", xxh32(chunk))
    out += struct.pack("<I", 0)                         # end mark
    out += struct.pack("<I", xxh32(data))               # content checksum
    return bytes(out)


# ---- E2B headers ----

def meta(version, bs, size, gen, build, base):
    """Metadata: six little-endian fields, 64 bytes (metadata.go)."""
    return struct.pack("<QQQQ16s16s", version, bs, size, gen, build, base)


def entry(off, length, build, store):
    """A BuildMap as V1-V4 store it: 40 bytes."""
    return struct.pack("<QQ16sQ", off, length, build, store)


def v3(version, bs, size, gen, build, base, entries):
    return meta(version, bs, size, gen, build, base) + b"".join(entry(*e) for e in entries)


def build_rec(bid, size, checksum, codec=NONE, frames=()):
    """A builds-section record: v4SerializableBuildInfo then the frame
    table (codec u32, count u32, count x {startU i64, startC i64,
    sizeU i32, sizeC i32})."""
    out = struct.pack("<16sq32s", bid, size, checksum)
    out += struct.pack("<II", codec, len(frames))
    for f in frames:
        out += struct.pack("<qqii", *f)
    return out


def builds(recs):
    # E2B writes them sorted by id bytes
    return struct.pack("<I", len(recs)) + b"".join(build_rec(*r) for r in sorted(recs))


def v4_section(recs, entries, count=None):
    n = len(entries) if count is None else count
    return builds(recs) + struct.pack("<I", n) + b"".join(entry(*e) for e in entries)


def uvarint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def varint(v):
    return uvarint((v << 1) ^ (v >> 63) if v >= 0 else ((-v - 1) << 1) | 1)


def v5_mapping(entries, table=None, idx=None):
    """The columnar mapping (writeV5MappingSection): the table of distinct
    non-nil ids in order of first appearance, then four varint columns of
    the non-nil entries in pages. table/idx override for hostile files."""
    live = [e for e in entries if e[2] != NIL]
    if table is None:
        table = []
        for e in live:
            if e[2] not in table:
                table.append(e[2])
    out = struct.pack("<I", len(table)) + b"".join(table)
    out += struct.pack("<I", len(live))
    prev = 0
    for e in live:
        out += uvarint(e[0] // P - prev)
        prev = e[0] // P
    for e in live:
        out += uvarint(e[1] // P)
    prev = 0
    for e in live:
        out += varint(e[3] // P - prev)
        prev = e[3] // P
    for k, e in enumerate(live):
        out += uvarint(idx[k] if idx else table.index(e[2]))
    return out


def framed(m, section, flags=0, size=None, compress=False, frame=None):
    """V4/V5: metadata, flags u8, section size u32, LZ4 frame."""
    z = lz4_frame(section, compress) if frame is None else frame
    return m + bytes([flags]) + struct.pack("<I", len(section) if size is None else size) + z


def sha(s):
    return hashlib.sha256(s.encode()).digest()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "golden")
    os.makedirs(out, exist_ok=True)
    files = {}

    # -- good: V1-V3 --
    # gen 1 over the root: own data, a nil range, the rest from the root
    child = [(0, 2 * P, ROOT, 0), (2 * P, 2 * P, GEN1, 0), (4 * P, 2 * P, NIL, 0),
             (6 * P, 10 * P, ROOT, 6 * P)]
    for v in (1, 2, 3):
        files[f"v{v}.header"] = v3(v, P, 16 * P, 1, GEN1, ROOT, child)
    # the layout is version & 0xFFFF
    files["v3-masked.header"] = v3(0x10003, P, 16 * P, 1, GEN1, ROOT, child)
    # a 3-generation chain; base_build_id is the root throughout
    files["chain-gen0.header"] = v3(3, P, 16 * P, 0, ROOT, ROOT, [])
    files["chain-gen1.header"] = v3(3, P, 16 * P, 1, GEN1, ROOT, [
        (0, 4 * P, ROOT, 0), (4 * P, 4 * P, GEN1, 0), (8 * P, 8 * P, ROOT, 8 * P)])
    gen2 = [(0, 4 * P, ROOT, 0), (4 * P, 2 * P, GEN1, 0), (6 * P, 4 * P, GEN2, 0),
            (10 * P, 2 * P, ROOT, 10 * P), (12 * P, P, NIL, 0), (13 * P, 3 * P, ROOT, 13 * P)]
    files["chain-gen2.header"] = v3(3, P, 16 * P, 2, GEN2, ROOT, gen2)
    # a child grown from 16 to 32 pages (E2B's ToResizedDiffHeader)
    files["v3-resized.header"] = v3(3, P, 32 * P, 1, GEN1, ROOT, [
        (0, 16 * P, ROOT, 0), (16 * P, P, GEN1, 0), (17 * P, 15 * P, NIL, 0)])
    # a memory snapshot: 2 MiB block size, page-granular ranges
    files["v3-memfile.header"] = v3(3, 2 * MIB, 8 * MIB, 1, GEN1, ROOT, [
        (0, P, GEN1, 0), (P, 511 * P, ROOT, P), (512 * P, 1536 * P, NIL, 0)])

    # -- good: V4/V5 --
    recs = [(ROOT, 16 * P, sha("root")),
            (GEN1, 4 * P, sha("gen1"), ZSTD, [(0, 0, 2 * P, 3000)]),   # trimmed to what is mapped
            (GEN2, 4 * P, sha("gen2"), LZ4, [(0, 0, 2 * P, 2000), (2 * P, 2000, 2 * P, 2500)])]
    m4 = meta(4, P, 16 * P, 2, GEN2, ROOT)
    m5 = meta(5, P, 16 * P, 2, GEN2, ROOT)
    files["v4.header"] = framed(m4, v4_section(recs, gen2))
    files["v5.header"] = framed(m5, builds(recs) + v5_mapping(gen2))
    root_full = [(ROOT, 16 * P, sha("root"), ZSTD, [(0, 0, 8 * P, 10000), (8 * P, 10000, 8 * P, 9000)])]
    files["v4-empty.header"] = framed(meta(4, P, 16 * P, 0, ROOT, ROOT), v4_section(root_full, []))
    files["v4-incomplete.header"] = framed(meta(4, P, 16 * P, 0, ROOT, ROOT),
                                           v4_section(root_full, []), flags=1)
    # V5 stores no nil ranges: an empty mapping is all zeros
    files["v5-empty.header"] = framed(meta(5, P, 16 * P, 1, GEN1, ROOT),
                                      builds([(GEN1, 0, NIL)]) + v5_mapping([]))
    # a size that is not a multiple of a page: the mapping covers the last page whole
    files["v5-unaligned.header"] = framed(meta(5, P, P + 1, 0, ROOT, ROOT),
                                          builds([(ROOT, P + 1, sha("tiny"))]) +
                                          v5_mapping([(0, 2 * P, ROOT, 0)]))
    # a page-granular memory snapshot under 2 MiB blocks; storage deltas go
    # negative when the build switches; really LZ4-compressed
    mem = []
    for k in range(100):
        mem += [(2 * k * P, P, GEN1, k * P), ((2 * k + 1) * P, P, ROOT, (2 * k + 1) * P)]
    mem_full = mem + [(200 * P, 824 * P, NIL, 0)]
    files["v5-memfile.header"] = framed(meta(5, 2 * MIB, 4 * MIB, 1, GEN1, ROOT),
                                        builds([(GEN1, 100 * P, sha("mem")), (ROOT, 0, NIL)]) +
                                        v5_mapping(mem_full), compress=True)
    files["v4-memfile.header"] = framed(meta(4, 2 * MIB, 4 * MIB, 1, GEN1, ROOT),
                                        v4_section([(GEN1, 100 * P, sha("mem")), (ROOT, 0, NIL)],
                                                   mem_full), compress=True)

    # -- bad: metadata --
    files["bad-short.header"] = meta(3, P, 16 * P, 0, ROOT, ROOT)[:40]
    files["bad-version0.header"] = v3(0, P, 16 * P, 0, ROOT, ROOT, [])
    files["bad-version6.header"] = v3(6, P, 16 * P, 0, ROOT, ROOT, [])
    files["bad-version-masked.header"] = v3(0x30000, P, 16 * P, 0, ROOT, ROOT, [])
    files["bad-blocksize0.header"] = v3(3, 0, 16 * P, 0, ROOT, ROOT, [])
    files["bad-size0.header"] = v3(3, P, 0, 0, ROOT, ROOT, [])
    files["bad-size-huge.header"] = v3(3, P, (1 << 44) + P, 0, ROOT, ROOT, [])
    files["bad-nil-build.header"] = v3(3, P, 16 * P, 0, NIL, ROOT, [])

    # -- bad: V1-V3 mappings --
    def bad3(name, entries, size=16 * P, version=3):
        files[f"bad-{name}.header"] = v3(version, P, size, 1, GEN1, ROOT, entries)
    bad3("gap", [(0, 2 * P, ROOT, 0), (3 * P, 13 * P, ROOT, 3 * P)])
    bad3("overlap", [(0, 4 * P, ROOT, 0), (2 * P, 14 * P, GEN1, 0)])
    bad3("unordered", [(4 * P, 12 * P, ROOT, 4 * P), (0, 4 * P, GEN1, 0)])
    bad3("unaligned", [(0, 4 * P, ROOT, 0), (4 * P, 12 * P, GEN1, 512)])
    bad3("past-end", [(0, 8 * P, ROOT, 0), (8 * P, 12 * P, GEN1, 0)])
    bad3("short-cover", [(0, 8 * P, ROOT, 0)])
    bad3("zero-length", [(0, 4 * P, ROOT, 0), (4 * P, 0, GEN1, 0), (4 * P, 12 * P, ROOT, 4 * P)])
    bad3("wrap", [(0, 4 * P, ROOT, 0), (4 * P, (1 << 64) - 4 * P, GEN1, 0)])
    bad3("wrap-storage", [(0, 4 * P, ROOT, 0), (4 * P, 12 * P, GEN1, (1 << 64) - 4 * P)])
    bad3("page-limit", [(0, 4 * P, ROOT, 0), (4 * P, 12 * P, GEN1, (1 << 32) * P)])
    bad3("v1-gap", [(0, 2 * P, ROOT, 0), (3 * P, 13 * P, ROOT, 3 * P)], version=1)
    files["bad-truncated.header"] = v3(3, P, 16 * P, 1, GEN1, ROOT, child)[:-17]

    # -- bad: V4/V5 framing (LZ4) --
    sec = v4_section(recs, gen2)
    good = lz4_frame(sec)
    files["bad-lz4-magic.header"] = framed(m4, sec, frame=struct.pack("<I", 0x184D2205) + good[4:])
    files["bad-lz4-header-checksum.header"] = framed(m4, sec, frame=good[:6] + bytes([good[6] ^ 1]) + good[7:])
    files["bad-lz4-truncated.header"] = framed(m4, sec, frame=good[:-10])
    files["bad-lz4-content-checksum.header"] = framed(m4, sec, frame=good[:-1] + bytes([good[-1] ^ 0x55]))
    files["bad-lz4-block-checksum.header"] = framed(m4, sec, frame=good[:20] + bytes([good[20] ^ 1]) + good[21:])
    files["bad-lz4-size-short.header"] = framed(m4, sec, size=len(sec) + 8)
    files["bad-lz4-size-long.header"] = framed(m4, sec, size=len(sec) - 4)
    files["bad-lz4-trailing.header"] = framed(m4, sec, frame=good + b"\0\0\0")
    files["bad-v4-cap.header"] = framed(m4, sec, size=(256 << 20) + 1)
    files["bad-lz4-size-huge.header"] = framed(m4, sec, size=100 << 20)
    files["bad-v4-flags.header"] = framed(m4, sec, flags=4)
    files["bad-v4-no-section.header"] = m4 + b"\0\0"

    # -- bad: builds section and frame tables --
    def bad4(name, recs4, entries=gen2, tail=b""):
        files[f"bad-{name}.header"] = framed(m4, v4_section(recs4, entries) + tail)
    files["bad-builds-count.header"] = framed(m4, struct.pack("<I", 1000) + sec[4:])
    bad4("dup-build", recs + [(GEN2, 0, NIL)])
    bad4("nil-record", recs + [(NIL, 0, NIL)])
    bad4("frames-codec0", [(ROOT, 16 * P, sha("root"), NONE, [(0, 0, P, 10)])] + recs[1:])
    bad4("frames-codec3", [(ROOT, 16 * P, sha("root"), 3, [(0, 0, 16 * P, 10)])] + recs[1:])
    bad4("frames-zero", recs[:2] + [(GEN2, 4 * P, sha("gen2"), LZ4, [(0, 0, 2 * P, 2000), (2 * P, 2000, 0, 2500)])])
    bad4("frames-overlap", recs[:2] + [(GEN2, 4 * P, sha("gen2"), LZ4, [(0, 0, 2 * P, 2000), (P, 2000, 2 * P, 2500)])])
    bad4("frames-c-overlap", recs[:2] + [(GEN2, 4 * P, sha("gen2"), LZ4, [(0, 0, 2 * P, 2000), (2 * P, 1000, 2 * P, 2500)])])
    bad4("frames-negative", recs[:2] + [(GEN2, 4 * P, sha("gen2"), LZ4, [(-P, 0, 2 * P, 2000)])])
    bad4("frames-gap", recs[:2] + [(GEN2, 4 * P, sha("gen2"), LZ4, [(0, 0, 2 * P, 2000), (3 * P, 2000, P, 2500)])])
    # frames-count: a table that claims more frames than the section holds
    s = bytearray(v4_section(recs[:2] + [(GEN2, 4 * P, sha("gen2"), LZ4, [(0, 0, 4 * P, 2000)])], gen2))
    k = s.find(GEN2) + 16 + 8 + 32 + 4
    s[k:k + 4] = struct.pack("<I", 5000)
    files["bad-frames-count.header"] = framed(m4, bytes(s))
    bad4("v4-gap", recs, [(0, 4 * P, ROOT, 0), (5 * P, 11 * P, ROOT, 5 * P)])
    bad4("v4-trailing", recs, gen2, tail=b"\0")
    files["bad-v4-mapping-count.header"] = framed(m4, v4_section(recs, gen2, count=7))

    # -- bad: V5 mapping --
    def bad5(name, mapping):
        files[f"bad-v5-{name}.header"] = framed(m5, builds(recs) + mapping)
    bad5("build-index", v5_mapping(gen2, idx=[0, 1, 2, 0, 3]))
    bad5("overlap", v5_mapping([(0, 4 * P, ROOT, 0), (2 * P, 2 * P, GEN1, 0)]))
    bad5("past-end", v5_mapping([(0, 4 * P, ROOT, 0), (12 * P, 8 * P, GEN1, 0)]))
    bad5("zero-length", v5_mapping([(0, 4 * P, ROOT, 0), (4 * P, 0, GEN1, 0)]))
    bad5("nil-in-table", v5_mapping([(0, 4 * P, ROOT, 0)], table=[ROOT, NIL]))
    bad5("dup-table", v5_mapping([(0, 4 * P, ROOT, 0)], table=[ROOT, GEN1, ROOT]))
    bad5("table-count", struct.pack("<I", 70000) + bytes(64))
    bad5("entry-count", struct.pack("<I", 1) + ROOT + struct.pack("<I", 100) + bytes(12))
    bad5("varint", struct.pack("<I", 1) + ROOT + struct.pack("<I", 1) + b"\x80" * 10 + b"\x01\x01\x01")
    bad5("storage-negative", struct.pack("<I", 1) + ROOT + struct.pack("<I", 1) +
         uvarint(0) + uvarint(1) + varint(-1) + uvarint(0))
    bad5("frames-gap", v5_mapping([(0, 4 * P, ROOT, 0), (4 * P, 4 * P, GEN1, 0),
                                   (8 * P, 8 * P, ROOT, 8 * P)]))

    for name, data in sorted(files.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
