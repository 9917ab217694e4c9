#!/usr/bin/env python3
"""Writes the hostile instances of issue 21 into Tests/Fuzz/regressions/dicom: each crashed
or exhausted the daemon before the element scan (deep nesting: SIGSEGV in DCMTK's recursive
parse; items: 1.27 GB; RLE 65535x65535: 34 GB at assembly). The fuzz run replays them."""
import os, struct, zlib

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regressions", "dicom")
os.makedirs(out, exist_ok=True)
CT = "1.2.840.10008.5.1.4.1.1.2"
LONG = {"OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OD", "OF", "OL", "OV", "SV", "UV"}


def el(g, e, vr, value):
    h = struct.pack("<HH", g, e) + vr.encode()
    h += struct.pack("<HI", 0, len(value)) if vr in LONG else struct.pack("<H", len(value))
    return h + value


def txt(g, e, vr, s):
    v = s.encode()
    if len(v) % 2:
        v += b"\0" if vr == "UI" else b" "
    return el(g, e, vr, v)


def raw(g, e, length):
    return struct.pack("<HHI", g, e, length)


UNDEF = 0xFFFFFFFF


def instance(name, rows, cols, private=b"", pixels=None, xfer="1.2.840.10008.1.2.1", deflate=False):
    sop = "1.2.826.0.1.3680043.10.1040.21." + str(abs(hash(name)) % 10**9)
    meta = el(2, 1, "OB", b"\0\1") + txt(2, 2, "UI", CT) + txt(2, 3, "UI", sop) + txt(2, 0x10, "UI", xfer)
    meta = el(2, 0, "UL", struct.pack("<I", len(meta))) + meta
    ds = txt(8, 0x16, "UI", CT) + txt(8, 0x18, "UI", sop) + txt(8, 0x60, "CS", "CT")
    if private:
        ds += txt(9, 0x10, "LO", "PERFD TEST") + private
    ds += txt(0x20, 0xD, "UI", sop + ".1") + txt(0x20, 0xE, "UI", sop + ".2")
    for e, v in [(2, 1)]:
        ds += el(0x28, e, "US", struct.pack("<H", v))
    ds += txt(0x28, 4, "CS", "MONOCHROME2")
    for e, v in [(0x10, rows), (0x11, cols), (0x100, 16), (0x101, 12), (0x102, 11), (0x103, 0)]:
        ds += el(0x28, e, "US", struct.pack("<H", v))
    ds += pixels if pixels is not None else el(0x7FE0, 0x10, "OW", bytes(rows * cols * 2))
    if deflate:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        ds = c.compress(ds) + c.flush()
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(128) + b"DICM" + meta + ds)


# 7,000 nested private sequences, undefined lengths (the crash, 252 KB).
sq_open = struct.pack("<HH", 9, 0x1001) + b"SQ" + struct.pack("<HI", 0, UNDEF) + raw(0xFFFE, 0xE000, UNDEF)
close = raw(0xFFFE, 0xE00D, 0) + raw(0xFFFE, 0xE0DD, 0)
instance("nested-7000-sq.dcm", 16, 16, sq_open * 7000 + txt(9, 0x1002, "LO", "BOTTOM") + close * 7000)
# The same through UN of undefined length, whose content is implicit VR (DCMTK parses it as a sequence).
un_open = struct.pack("<HH", 9, 0x1001) + b"UN" + struct.pack("<HI", 0, UNDEF) + raw(0xFFFE, 0xE000, UNDEF)
implicit_open = raw(9, 0x1001, UNDEF) + raw(0xFFFE, 0xE000, UNDEF)
instance("nested-7000-un.dcm", 16, 16, un_open + implicit_open * 6999 + raw(9, 0x1002, 0) + close * 7000)
# 4 million empty items, deflated (32 MB inflated).
instance("items-4m-deflated.dcm", 16, 16, struct.pack("<HH", 9, 0x1001) + b"SQ" + struct.pack("<HI", 0, UNDEF) +
         raw(0xFFFE, 0xE000, 0) * 4_000_000 + raw(0xFFFE, 0xE0DD, 0), xfer="1.2.840.10008.1.2.1.99", deflate=True)
# RLE declaring 65535 x 65535 in 15 KB.
frag = struct.pack("<II", 1, 64) + bytes(56) + b"\x81\x00" * 7600
px = struct.pack("<HH", 0x7FE0, 0x10) + b"OB" + struct.pack("<HI", 0, UNDEF) + raw(0xFFFE, 0xE000, 0) + \
    raw(0xFFFE, 0xE000, len(frag)) + frag + raw(0xFFFE, 0xE0DD, 0)
instance("rle-65535.dcm", 65535, 65535, pixels=px, xfer="1.2.840.10008.1.2.5")
for n in sorted(os.listdir(out)):
    print(n, os.path.getsize(os.path.join(out, n)))
