#!/usr/bin/env python3
"""Readiness probes for scripts/services.sh, speaking the wire protocols with the stdlib only.

  probe.py kafka HOST:PORT        Kafka ApiVersions (v3) + Metadata (v12): the broker is up,
                                  registered and serving metadata.
  probe.py cql HOST:PORT          CQL native protocol v4: STARTUP, then
                                  SELECT release_version FROM system.local.
  probe.py cql-smoke HOST:PORT    CQL: keyspace, counter table with `c = c + ?`, and a
                                  lightweight transaction (INSERT ... IF NOT EXISTS).

Exit 0 and one line on stdout when the server answered; exit 1 and a reason on stderr if not.
Nothing here is a client library: just enough of each protocol to know a server is real.
"""

import socket
import struct
import sys
import time

TIMEOUT = 5.0


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return bytes(buf)


# --------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------

def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("short response")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def compact_str(self):
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n).decode()

    def tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    # CQL types
    def cql_string(self):
        return self.take(struct.unpack(">H", self.take(2))[0]).decode()

    def cql_bytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)


def kafka_request(sock, api_key, api_version, correlation_id, body, flexible_header):
    client_id = b"hissaback-probe"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    if flexible_header:
        header += b"\x00"  # no tagged fields
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    r = Reader(recv_exact(sock, size))
    if r.i32() != correlation_id:
        raise ValueError("correlation id mismatch")
    return r


def probe_kafka(addr):
    with socket.create_connection(split_addr(addr), timeout=TIMEOUT) as sock:
        # ApiVersions v3: flexible request header v2; response header is always v0.
        body = uvarint(len(b"probe") + 1) + b"probe" + uvarint(len(b"1") + 1) + b"1" + b"\x00"
        r = kafka_request(sock, 18, 3, 1, body, flexible_header=True)
        err = r.i16()
        if err:
            raise ValueError(f"ApiVersions error code {err}")
        n_apis = r.uvarint() - 1
        # Metadata v12: all topics (null array), no auto-creation; response header v1.
        body = b"\x00" + b"\x00" + b"\x00" + b"\x00"
        r = kafka_request(sock, 3, 12, 2, body, flexible_header=True)
        r.tagged_fields()
        r.i32()  # throttle_time_ms
        brokers = []
        for _ in range(r.uvarint() - 1):
            node_id, host, port = r.i32(), r.compact_str(), r.i32()
            r.compact_str()  # rack
            r.tagged_fields()
            brokers.append(f"{node_id}@{host}:{port}")
        cluster_id = r.compact_str()
        controller = r.i32()
        if not brokers:
            raise ValueError("metadata lists no broker yet")
        return f"kafka ok: {n_apis} APIs, brokers {','.join(brokers)}, controller {controller}, cluster {cluster_id}"


# --------------------------------------------------------------------------------------
# CQL native protocol v4
# --------------------------------------------------------------------------------------

OP_ERROR, OP_STARTUP, OP_READY, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x07, 0x08
CONSISTENCY_ONE, CONSISTENCY_SERIAL = 0x0001, 0x0008


def cql_string_map(d):
    out = struct.pack(">H", len(d))
    for k, v in d.items():
        out += struct.pack(">H", len(k)) + k.encode() + struct.pack(">H", len(v)) + v.encode()
    return out


class Cql:
    def __init__(self, addr):
        self.sock = socket.create_connection(split_addr(addr), timeout=TIMEOUT)
        self.stream = 0
        op, body = self.request(OP_STARTUP, cql_string_map({"CQL_VERSION": "3.0.0"}))
        if op != OP_READY:
            raise ValueError(f"STARTUP answered with opcode {op} (authentication enabled?)")

    def close(self):
        self.sock.close()

    def request(self, opcode, body):
        self.stream = (self.stream + 1) % 32768
        self.sock.sendall(struct.pack(">BBhBi", 0x04, 0, self.stream, opcode, len(body)) + body)
        version, _flags, stream, op, length = struct.unpack(">BBhBi", recv_exact(self.sock, 9))
        payload = recv_exact(self.sock, length)
        if op == OP_ERROR:
            r = Reader(payload)
            code = r.i32()
            raise ValueError(f"server error 0x{code:04x}: {r.cql_string()}")
        return op, payload

    def query(self, cql, values=(), consistency=CONSISTENCY_ONE):
        """Run one statement; values are already-serialized bytes. Returns a list of dict rows."""
        body = struct.pack(">i", len(cql.encode())) + cql.encode() + struct.pack(">H", consistency)
        if values:
            body += b"\x01" + struct.pack(">H", len(values))
            for v in values:
                body += struct.pack(">i", len(v)) + v
        else:
            body += b"\x00"
        op, payload = self.request(OP_QUERY, body)
        if op != OP_RESULT:
            raise ValueError(f"QUERY answered with opcode {op}")
        r = Reader(payload)
        kind = r.i32()
        if kind != 0x0002:  # Void, SetKeyspace, SchemaChange ...
            return []
        flags, ncols = r.i32(), r.i32()
        if flags & 0x0002:
            r.cql_bytes()  # paging state
        if flags & 0x0004:
            raise ValueError("rows without metadata")
        if flags & 0x0001:
            r.cql_string(), r.cql_string()
        cols = []
        for _ in range(ncols):
            if not flags & 0x0001:
                r.cql_string(), r.cql_string()
            cols.append((r.cql_string(), self.read_type(r)))
        rows = []
        for _ in range(r.i32()):
            rows.append({name: decode(t, r.cql_bytes()) for name, t in cols})
        return rows

    def read_type(self, r):
        tid = r.i16()
        if tid == 0x0000:
            return ("custom", r.cql_string())
        if tid in (0x0020, 0x0022):
            return (tid, self.read_type(r))
        if tid == 0x0021:
            return (tid, self.read_type(r), self.read_type(r))
        if tid in (0x0030, 0x0031):
            raise ValueError("UDT/tuple columns are not supported by this probe")
        return tid


def decode(t, b):
    if b is None:
        return None
    if t in (0x0001, 0x000D):  # ascii, varchar
        return b.decode()
    if t == 0x0004:  # boolean
        return b != b"\x00"
    if t in (0x0002, 0x0005, 0x000B):  # bigint, counter, timestamp
        return struct.unpack(">q", b)[0]
    if t == 0x0009:  # int
        return struct.unpack(">i", b)[0]
    return b.hex()


def probe_cql(addr):
    c = Cql(addr)
    try:
        rows = c.query("SELECT release_version FROM system.local")
        if not rows:
            raise ValueError("system.local is empty")
        return f"cql ok: release_version {rows[0]['release_version']}"
    finally:
        c.close()


def cql_smoke(addr):
    """What the project relies on: counter updates with a bound delta, and LWT inserts."""
    c = Cql(addr)
    try:
        version = c.query("SELECT release_version FROM system.local")[0]["release_version"]
        c.query("CREATE KEYSPACE IF NOT EXISTS hissaback_smoke WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        c.query("CREATE TABLE IF NOT EXISTS hissaback_smoke.hits (k text PRIMARY KEY, c counter)")
        c.query("CREATE TABLE IF NOT EXISTS hissaback_smoke.claims (k text PRIMARY KEY, owner text)")
        key = f"k{time.time_ns()}"
        for delta in (2, 3):
            c.query(f"UPDATE hissaback_smoke.hits SET c = c + ? WHERE k = '{key}'",
                    values=[struct.pack(">q", delta)])
        got = c.query(f"SELECT c FROM hissaback_smoke.hits WHERE k = '{key}'")
        if [row["c"] for row in got] != [5]:
            raise ValueError(f"counter: expected 5, read {got}")
        first = c.query(f"INSERT INTO hissaback_smoke.claims (k, owner) VALUES ('{key}', 'a') IF NOT EXISTS")
        second = c.query(f"INSERT INTO hissaback_smoke.claims (k, owner) VALUES ('{key}', 'b') IF NOT EXISTS")
        if not first or first[0]["[applied]"] is not True:
            raise ValueError(f"LWT: first insert not applied: {first}")
        if not second or second[0]["[applied]"] is not False or second[0].get("owner") != "a":
            raise ValueError(f"LWT: second insert should be refused with owner 'a': {second}")
        read = c.query(f"SELECT owner FROM hissaback_smoke.claims WHERE k = '{key}'",
                       consistency=CONSISTENCY_SERIAL)
        if read != [{"owner": "a"}]:
            raise ValueError(f"LWT: serial read returned {read}")
        c.query("DROP KEYSPACE hissaback_smoke")
        return f"cql smoke ok ({version}): counter c = c + ? -> 5, LWT applied then refused, SERIAL read"
    finally:
        c.close()


def main(argv):
    if len(argv) != 3 or argv[1] not in ("kafka", "cql", "cql-smoke"):
        print(__doc__, file=sys.stderr)
        return 2
    fn = {"kafka": probe_kafka, "cql": probe_cql, "cql-smoke": cql_smoke}[argv[1]]
    try:
        print(fn(argv[2]))
        return 0
    except (OSError, ValueError, KeyError, IndexError, struct.error) as e:
        print(f"{argv[1]} {argv[2]}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
