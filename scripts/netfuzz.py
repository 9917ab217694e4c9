#!/usr/bin/env python3
"""Network fuzz loop against a running `perfd serve`.

Each round opens a connection to the daemon and does one of: random bytes; a mutated
A-ASSOCIATE-RQ; a valid association followed by a C-STORE whose PDUs, command set or data
set are mutated (bit flips, cut lengths, lengths past the end, nested sequences, huge
declared values); a valid association that goes silent or trickles bytes; an abort at a
random point. Every `--check-every` rounds the daemon must still be alive (its PID) and
answer a C-ECHO from the allowed AE (DCMTK's echoscu) within `--echo-timeout` seconds,
else the round's inputs are saved under --crashes and the run fails.

Plain Python (no pynetdicom): the PDUs are built here byte by byte, so a mutation can land
anywhere, including in places a DICOM library would refuse to write.

Usage: netfuzz.py --port P --pid PID --corpus DIR [--seconds S] [--seed N]
                  [--aet SCANNER] [--called PERFD] [--crashes DIR] [--stats FILE]
                  [--parallel N] [--check-every N]
"""
import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

CT_STORAGE = b"1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = b"1.2.840.10008.1.1"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
APP_CONTEXT = b"1.2.840.10008.3.1.1.1"


def pad_uid(uid):
    return uid + (b"\0" if len(uid) % 2 else b"")


def item(kind, body):
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_rq(calling, called, contexts, max_pdu=65536):
    """contexts: list of (id, abstract, [transfer syntaxes])."""
    body = struct.pack(">HH", 1, 0) + called.ljust(16)[:16] + calling.ljust(16)[:16] + b"\0" * 32
    body += item(0x10, APP_CONTEXT)
    for pcid, abstract, tss in contexts:
        sub = item(0x30, abstract) + b"".join(item(0x40, ts) for ts in tss)
        body += item(0x20, struct.pack(">BBBB", pcid, 0, 0, 0) + sub)
    user = item(0x51, struct.pack(">I", max_pdu)) + item(0x52, b"1.2.826.0.1.3680043.2.1545.1") + item(0x55, b"NETFUZZ")
    body += item(0x50, user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def element_implicit(group, elem, value):
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def command_set(field, msg_id, sop_class, sop_instance=None, has_data=True):
    els = element_implicit(0, 0x0002, pad_uid(sop_class))
    els += element_implicit(0, 0x0100, struct.pack("<H", field))
    els += element_implicit(0, 0x0110, struct.pack("<H", msg_id))
    if field == 0x0001:
        els += element_implicit(0, 0x0700, struct.pack("<H", 0))
    els += element_implicit(0, 0x0800, struct.pack("<H", 0x0000 if has_data else 0x0101))
    if sop_instance is not None:
        els += element_implicit(0, 0x1000, pad_uid(sop_instance))
    return element_implicit(0, 0x0000, struct.pack("<I", len(els))) + els


def pdata(pcid, payload, command, last=True):
    mch = (1 if command else 0) | (2 if last else 0)
    pdv = struct.pack(">IBB", len(payload) + 2, pcid, mch) + payload
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def pdata_fragments(pcid, payload, command, size):
    out = []
    for i in range(0, max(len(payload), 1), size):
        chunk = payload[i:i + size]
        out.append(pdata(pcid, chunk, command, last=i + size >= len(payload)))
    return out


RELEASE_RQ = struct.pack(">BBI", 0x05, 0, 4) + b"\0" * 4
ABORT = struct.pack(">BBI", 0x07, 0, 4) + b"\0" * 4


def dataset_of(path):
    """The data set of a Part 10 file in explicit VR little endian (after the meta header)."""
    data = open(path, "rb").read()
    assert data[128:132] == b"DICM", path
    pos = 132
    # Group 0002 is explicit VR little endian; its group length tells where it ends.
    grp_len = struct.unpack("<I", data[pos + 8:pos + 12])[0]
    return data[pos + 12 + grp_len:]


def sop_instance_of(ds):
    i = ds.find(b"\x08\x00\x18\x00UI")
    if i < 0:
        return None
    n = struct.unpack("<H", ds[i + 6:i + 8])[0]
    return ds[i + 8:i + 8 + n].rstrip(b"\0 ")


def set_sop_instance(ds, uid):
    i = ds.find(b"\x08\x00\x18\x00UI")
    if i < 0:
        return ds
    n = struct.unpack("<H", ds[i + 6:i + 8])[0]
    new = pad_uid(uid)
    return ds[:i + 6] + struct.pack("<H", len(new)) + new + ds[i + 8 + n:]


def nested_sequence(depth, explicit=True):
    """A private sequence (0009,0010 creator, 0009,1010 SQ) nested `depth` levels, undefined lengths."""
    head = b""
    tail = b""
    for _ in range(depth):
        if explicit:
            head += struct.pack("<HH", 0x0009, 0x1010) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)
        else:
            head += struct.pack("<HHI", 0x0009, 0x1010, 0xFFFFFFFF)
        head += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        tail = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0) + tail
    return head + tail


def insert_before_group(ds, group, blob):
    """Insert `blob` before the first element of `group` or above (a crude sorted insert)."""
    pos = 0
    while pos + 8 <= len(ds):
        g, e = struct.unpack("<HH", ds[pos:pos + 4])
        if g >= group:
            return ds[:pos] + blob + ds[pos:]
        vr = ds[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"UC", b"UR", b"OV", b"SV", b"UV"):
            n = struct.unpack("<I", ds[pos + 8:pos + 12])[0]
            if n == 0xFFFFFFFF:
                return ds[:pos] + blob + ds[pos:]
            pos += 12 + n
        else:
            n = struct.unpack("<H", ds[pos + 6:pos + 8])[0]
            pos += 8 + n
    return ds + blob


class Fuzzer:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.datasets = []
        for name in sorted(os.listdir(args.corpus)):
            if name.endswith(".dcm"):
                self.datasets.append(dataset_of(os.path.join(args.corpus, name)))
        if not self.datasets:
            sys.exit(f"no .dcm files in {args.corpus}")
        self.stats = {"rounds": 0, "by_kind": {}, "answers": {}, "checks": 0, "crashes": 0, "hangs": 0,
                      "bytes_sent": 0, "stores_acknowledged": 0}
        self.recent = []   # the last rounds' inputs, saved if the daemon dies
        self.lock = threading.Lock()

    # --- mutations -----------------------------------------------------------------
    def flip(self, data, n=None):
        if not data:
            return data
        b = bytearray(data)
        for _ in range(n or self.rng.randint(1, 8)):
            i = self.rng.randrange(len(b))
            b[i] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    def mutate(self, data):
        r = self.rng.random()
        if r < 0.35:
            return self.flip(data)
        if r < 0.5 and len(data) > 8:
            return data[:self.rng.randrange(len(data))]  # cut short
        if r < 0.65 and len(data) > 12:
            # overwrite a 4-byte field with an interesting length
            i = self.rng.randrange(len(data) - 4)
            v = self.rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE, len(data), len(data) * 2, 65535, 0x10000])
            return data[:i] + struct.pack(self.rng.choice(["<I", ">I"]), v) + data[i + 4:]
        if r < 0.8:
            # duplicate or drop a chunk
            i = self.rng.randrange(len(data) or 1)
            j = min(len(data), i + self.rng.randint(1, 512))
            return data[:i] + data[i:j] * self.rng.randint(0, 4) + data[j:]
        # splice random bytes
        i = self.rng.randrange(len(data) or 1)
        return data[:i] + os.urandom(self.rng.randint(1, 64)) + data[i:]

    def mutate_dataset(self, ds):
        r = self.rng.random()
        if r < 0.15:
            return insert_before_group(ds, 0x0010, nested_sequence(self.rng.choice([2, 20, 200, 2000, 9000])))
        if r < 0.25:
            # Rows/Columns to something huge
            for tag in (b"\x28\x00\x10\x00US", b"\x28\x00\x11\x00US"):
                i = ds.find(tag)
                if i >= 0:
                    ds = ds[:i + 8] + struct.pack("<H", self.rng.choice([0, 1, 4097, 65535])) + ds[i + 10:]
            return ds
        if r < 0.32:
            # many empty items in a private sequence
            n = self.rng.choice([1000, 100000])
            body = struct.pack("<HHI", 0xFFFE, 0xE000, 0) * n
            seq = struct.pack("<HH", 0x0009, 0x1010) + b"SQ\0\0" + struct.pack("<I", len(body)) + body
            return insert_before_group(ds, 0x0010, seq)
        return self.mutate(ds)

    # --- I/O -------------------------------------------------------------------
    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.args.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def send(self, s, data):
        with self.lock:
            self.stats["bytes_sent"] += len(data)
        s.sendall(data)

    def read_pdu(self, s, timeout=5):
        s.settimeout(timeout)
        head = b""
        while len(head) < 6:
            chunk = s.recv(6 - len(head))
            if not chunk:
                return None, b""
            head += chunk
        kind, _, length = struct.unpack(">BBI", head)
        body = b""
        while len(body) < min(length, 1 << 20):
            chunk = s.recv(min(length, 1 << 20) - len(body))
            if not chunk:
                break
            body += chunk
        return kind, body

    def note(self, key):
        with self.lock:
            self.stats["answers"][key] = self.stats["answers"].get(key, 0) + 1

    # --- rounds ----------------------------------------------------------------
    def round_random(self):
        s = self.connect()
        data = os.urandom(self.rng.randint(1, 4096))
        if self.rng.random() < 0.5:
            data = bytes([self.rng.randint(1, 7), 0]) + data
        self.recent.append(("random", data))
        self.send(s, data)
        self.drain(s)

    def round_assoc(self):
        rq = associate_rq(self.args.aet.encode(), self.args.called.encode(),
                          [(1, CT_STORAGE, [EXPLICIT_LE]), (3, VERIFICATION, [IMPLICIT_LE])])
        if self.rng.random() < 0.3:
            rq = associate_rq(os.urandom(16), self.args.called.encode(), [(1, CT_STORAGE, [EXPLICIT_LE])])
        data = self.mutate(rq)
        self.recent.append(("assoc", data))
        s = self.connect()
        self.send(s, data)
        self.drain(s)

    def open_association(self):
        s = self.connect()
        rq = associate_rq(self.args.aet.encode(), self.args.called.encode(),
                          [(1, CT_STORAGE, [EXPLICIT_LE]), (3, VERIFICATION, [IMPLICIT_LE])])
        self.send(s, rq)
        kind, body = self.read_pdu(s)
        if kind != 0x02:
            self.note(f"assoc-not-accepted:{kind}")
            s.close()
            return None
        return s

    def round_store(self):
        s = self.open_association()
        if s is None:
            return
        ds = self.rng.choice(self.datasets)
        uid = b"1.2.826.0.1.3680043.9.7777." + str(self.rng.randrange(10 ** 12)).encode()
        ds = set_sop_instance(ds, uid)
        where = self.rng.random()
        cmd = command_set(0x0001, self.rng.randrange(65536), CT_STORAGE, uid)
        if where < 0.15:
            cmd = self.mutate(cmd)
        elif where < 0.85:
            ds = self.mutate_dataset(ds)
        pdus = [pdata(1, cmd, True)] + pdata_fragments(1, ds, False, self.rng.choice([16, 4096, 16000, 65000]))
        if 0.85 <= where:
            k = self.rng.randrange(len(pdus))
            pdus[k] = self.mutate(pdus[k])
        self.recent.append(("store", b"".join(pdus)))
        try:
            for p in pdus:
                self.send(s, p)
            kind, body = self.read_pdu(s, timeout=10)
            if kind == 0x04:
                status = self.store_status(body)
                self.note(f"store-status:{status:04x}" if status is not None else "store-answer")
                if status == 0:
                    with self.lock:
                        self.stats["stores_acknowledged"] += 1
            else:
                self.note(f"store-pdu:{kind}")
            if self.rng.random() < 0.8:
                self.send(s, RELEASE_RQ)
                self.read_pdu(s, timeout=5)
            else:
                self.send(s, ABORT)
        except (OSError, socket.timeout) as e:
            self.note(f"store-io:{type(e).__name__}")
        finally:
            s.close()

    @staticmethod
    def store_status(body):
        # P-DATA-TF body: PDV length, pcid, control, command set (implicit LE)
        i = body.find(b"\x00\x00\x00\x09\x02\x00\x00\x00")
        if i < 0 or i + 10 > len(body):
            return None
        return struct.unpack("<H", body[i + 8:i + 10])[0]

    def round_slow(self):
        # A valid request trickled, or an association that goes silent: must not hold others.
        s = self.connect()
        rq = associate_rq(self.args.aet.encode(), self.args.called.encode(), [(1, CT_STORAGE, [EXPLICIT_LE])])
        cut = self.rng.randrange(len(rq))
        self.recent.append(("slow", rq[:cut]))
        for b in rq[:cut][: self.rng.randint(1, 12)]:
            self.send(s, bytes([b]))
            time.sleep(0.05)
        s.close()

    def round_abort(self):
        s = self.open_association()
        if s is None:
            return
        ds = self.rng.choice(self.datasets)
        cmd = command_set(0x0001, 7, CT_STORAGE, sop_instance_of(ds))
        pdus = [pdata(1, cmd, True)] + pdata_fragments(1, ds, False, 16000)
        k = self.rng.randrange(len(pdus) + 1)
        self.recent.append(("abort", b"".join(pdus[:k])))
        try:
            for p in pdus[:k]:
                self.send(s, p)
            if self.rng.random() < 0.5:
                self.send(s, ABORT)
        except OSError:
            pass
        s.close()

    def drain(self, s):
        try:
            kind, _ = self.read_pdu(s, timeout=1.5)
            self.note(f"pdu:{kind}")
        except (OSError, socket.timeout) as e:
            self.note(f"io:{type(e).__name__}")
        finally:
            s.close()

    # --- liveness ----------------------------------------------------------------
    def alive(self):
        try:
            os.kill(self.args.pid, 0)
        except OSError:
            return "crash"
        t0 = time.time()
        r = subprocess.run(["echoscu", "-aet", self.args.aet, "-aec", self.args.called, "-to", str(self.args.echo_timeout),
                            "-ta", str(self.args.echo_timeout), "127.0.0.1", str(self.args.port)],
                           capture_output=True, timeout=self.args.echo_timeout * 3 + 5)
        self.stats["max_echo_s"] = max(self.stats.get("max_echo_s", 0), time.time() - t0)
        if r.returncode != 0:
            try:
                os.kill(self.args.pid, 0)
            except OSError:
                return "crash"
            return "hang"
        return None

    def save(self, what):
        os.makedirs(self.args.crashes, exist_ok=True)
        stamp = f"{what}-{int(time.time())}"
        for i, (kind, data) in enumerate(self.recent[-self.args.check_every:]):
            with open(os.path.join(self.args.crashes, f"{stamp}-{i:03d}-{kind}.bin"), "wb") as f:
                f.write(data)

    def one_round(self):
        kinds = [(self.round_store, 0.45), (self.round_assoc, 0.2), (self.round_random, 0.15),
                 (self.round_abort, 0.12), (self.round_slow, 0.08)]
        with self.lock:
            fn = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
            name = fn.__name__.replace("round_", "")
            self.stats["by_kind"][name] = self.stats["by_kind"].get(name, 0) + 1
        try:
            fn()
        except (OSError, socket.timeout) as e:
            self.note(f"connect:{type(e).__name__}")
        with self.lock:
            self.stats["rounds"] += 1

    def run(self):
        # Rounds run `--parallel` at a time (a scanner's peers are concurrent too); after each
        # batch of `--check-every` rounds the daemon must be alive and answer a C-ECHO.
        deadline = time.time() + self.args.seconds
        start = time.time()
        with ThreadPoolExecutor(self.args.parallel) as pool:
            while time.time() < deadline:
                list(pool.map(lambda _: self.one_round(), range(self.args.check_every)))
                self.stats["checks"] += 1
                bad = self.alive()
                if bad:
                    self.stats[bad + "es" if bad == "crash" else bad + "s"] += 1
                    self.save(bad)
                    break
                self.recent.clear()
        self.stats["seconds"] = round(time.time() - start, 1)
        if self.stats["crashes"] == 0 and self.stats["hangs"] == 0:
            bad = self.alive()
            if bad:
                self.stats[bad + "es" if bad == "crash" else bad + "s"] += 1
                self.save(bad)
        return self.stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--aet", default="SCANNER")
    ap.add_argument("--called", default="PERFD")
    ap.add_argument("--check-every", type=int, default=40)
    ap.add_argument("--parallel", type=int, default=6)
    ap.add_argument("--echo-timeout", type=int, default=10)
    ap.add_argument("--crashes", default="netfuzz-crashes")
    ap.add_argument("--stats")
    args = ap.parse_args()
    stats = Fuzzer(args).run()
    text = json.dumps(stats, indent=1, sort_keys=True)
    print(text)
    if args.stats:
        with open(args.stats, "w") as f:
            f.write(text)
    sys.exit(1 if stats["crashes"] or stats["hangs"] else 0)


if __name__ == "__main__":
    main()
