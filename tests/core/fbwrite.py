"""fbwrite.py — a minimal FlatBuffers writer for the core's API tests.

Enough of the format for the tables of schemas/package.fbs, drift.fbs,
quarantine.fbs, metrics.fbs and log.fbs: tables with scalars, strings,
byte and float vectors and vectors of tables (no unions, no structs).
The buffer is laid out front to back: root offset and file identifier,
then each table's vtable and fields, then what its offset fields point
at (always further on, as uoffset_t must). Every field given is written,
defaults too, so a test says exactly what the core reads.

    buf = finish(Table({0: ("string", "abc"), 3: ("ubyte", 2)}), b"TPKG")

Field kinds: bool byte ubyte short ushort int uint long ulong float
double (scalars), string (str or bytes: bytes are written as they are,
for non-UTF-8 tests), ubytes (bytes), floats (list of float), tables
(list of Table), table (Table).
"""
import struct

SCALAR = {"bool": "?", "byte": "b", "ubyte": "B", "short": "h",
          "ushort": "H", "int": "i", "uint": "I", "long": "q",
          "ulong": "Q", "float": "f", "double": "d"}


class Table:
    """A table: {slot (field index in schema order): (kind, value)}."""

    def __init__(self, fields):
        for slot, (kind, _) in fields.items():
            if kind not in SCALAR and kind not in (
                    "string", "ubytes", "floats", "tables", "table"):
                raise ValueError("field %d: unknown kind %r" % (slot, kind))
        self.fields = fields


class _Writer:
    def __init__(self):
        self.b = bytearray()

    def pad(self, align, extra=0):
        """Zero bytes until len + extra is a multiple of align."""
        while (len(self.b) + extra) % align:
            self.b.append(0)

    def table(self, t):
        sizes = {s: struct.calcsize("<" + SCALAR[k]) if k in SCALAR else 4
                 for s, (k, _) in t.fields.items()}
        layout, off = {}, 4  # after the soffset to the vtable
        for s in sorted(sizes, key=lambda s: (-sizes[s], s)):
            off = (off + sizes[s] - 1) // sizes[s] * sizes[s]
            layout[s] = off
            off += sizes[s]
        tsize = off
        nslots = max(t.fields) + 1 if t.fields else 0
        self.pad(2)
        vtpos = len(self.b)
        self.b += struct.pack("<HH", 4 + 2 * nslots, tsize)
        for s in range(nslots):
            self.b += struct.pack("<H", layout.get(s, 0))
        self.pad(max([4] + list(sizes.values())))
        tpos = len(self.b)
        self.b += bytes(tsize)
        struct.pack_into("<i", self.b, tpos, tpos - vtpos)
        for s, (k, v) in sorted(t.fields.items()):
            if k in SCALAR:
                struct.pack_into("<" + SCALAR[k], self.b, tpos + layout[s], v)
        for s, (k, v) in sorted(t.fields.items()):
            if k not in SCALAR:
                at = tpos + layout[s]
                struct.pack_into("<I", self.b, at, self.child(k, v) - at)
        return tpos

    def child(self, kind, v):
        if kind == "table":
            return self.table(v)
        self.pad(4)
        pos = len(self.b)
        if kind == "string":
            data = v if isinstance(v, bytes) else v.encode()
            self.b += struct.pack("<I", len(data)) + data + b"\0"
        elif kind == "ubytes":
            self.b += struct.pack("<I", len(v)) + bytes(v)
        elif kind == "floats":
            self.b += struct.pack("<I%df" % len(v), len(v), *v)
        else:  # tables: the offsets, then the tables after them
            self.b += struct.pack("<I", len(v)) + bytes(4 * len(v))
            for i, t in enumerate(v):
                at = pos + 4 + 4 * i
                struct.pack_into("<I", self.b, at, self.table(t) - at)
        return pos


def finish(root, ident):
    """The FlatBuffer of root with file identifier ident (4 bytes)."""
    if len(ident) != 4:
        raise ValueError("file identifier %r: want 4 bytes" % ident)
    w = _Writer()
    w.b += bytes(4) + ident
    struct.pack_into("<I", w.b, 0, w.table(root))
    w.pad(8)
    return bytes(w.b)


# ---- the schemas the core reads ---------------------------------------------

def drift_event(kind=0, detector=None, node=None, metric=None, value=0.0,
                threshold=0.0, index=0, time_ns=0, frame_id=0):
    """schemas/drift.fbs DriftEvent (kind 0 Start, 1 End)."""
    f = {0: ("byte", kind), 4: ("double", value), 5: ("double", threshold),
         6: ("ulong", index), 7: ("ulong", time_ns), 8: ("ulong", frame_id)}
    for slot, s in ((1, detector), (2, node), (3, metric)):
        if s is not None:
            f[slot] = ("string", s)
    return finish(Table(f), b"DRFT")


def sample(frame_id, time_ns=0, admitted_ns=0, label=None, confidence=0.0,
           mean_distance=0.0, reasons=0, features=None, thumb=None):
    """A QuarantinedSample table; thumb = (width, height, Gray8 bytes)."""
    f = {0: ("ulong", frame_id), 1: ("ulong", time_ns),
         2: ("ulong", admitted_ns), 4: ("float", confidence),
         5: ("float", mean_distance), 6: ("ubyte", reasons)}
    if label is not None:
        f[3] = ("string", label)
    if features is not None:
        f[8] = ("floats", features)
    if thumb is not None:
        f[9] = ("ushort", thumb[0])
        f[10] = ("ushort", thumb[1])
        f[11] = ("ubytes", thumb[2])
    return Table(f)


def quarantine_batch(samples, seq=1, trigger="drift_end"):
    """schemas/quarantine.fbs QuarantineBatch of sample() tables."""
    return finish(Table({0: ("ulong", seq), 1: ("uint", len(samples)),
                         2: ("ulong", len(samples)), 6: ("bool", False),
                         7: ("string", trigger),
                         8: ("tables", samples)}), b"QBAT")


def metrics(time_ns, source, seq, entries, full=True):
    """schemas/metrics.fbs Metrics; entries: [(key, number | str | None)]
    (None: removed)."""
    es = []
    for key, v in entries:
        f = {0: ("string", key)}
        if v is None:
            f[3] = ("bool", True)
        elif isinstance(v, (str, bytes)):
            f[2] = ("string", v)
        else:
            f[1] = ("double", float(v))
        es.append(Table(f))
    return finish(Table({0: ("ulong", time_ns), 1: ("string", source),
                         2: ("ulong", seq), 3: ("bool", full),
                         4: ("tables", es)}), b"TMET")


def log_line(time_ns, level, source, text, seq, dropped=0):
    """schemas/log.fbs LogLine (level 0 error .. 3 debug)."""
    return finish(Table({0: ("ulong", time_ns), 1: ("byte", level),
                         2: ("string", source), 3: ("string", text),
                         4: ("ulong", seq), 5: ("ulong", dropped)}), b"TLOG")


def payload(items):
    """Items back to back, each [u32 LE length][FlatBuffer]."""
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def package(pid, device, kind, items=(), priority=2, created_ns=0,
            opened_ns=0, compression=0, body=None, raw_size=None, count=None,
            attachments=(), packager="pack", seq=1, schemas=()):
    """schemas/package.fbs Package. body: the (compressed) payload, else
    payload(items) uncompressed; raw_size and count default to what items
    make. attachments: [(name, media type, bytes)]; schemas: [(name,
    identifier, version)]."""
    raw = payload(items)
    f = {0: ("string", pid), 1: ("string", device), 2: ("string", kind),
         3: ("ubyte", priority), 4: ("ulong", created_ns),
         5: ("ulong", opened_ns), 7: ("byte", compression),
         8: ("ulong", len(raw) if raw_size is None else raw_size),
         9: ("uint", len(items) if count is None else count),
         10: ("ubytes", raw if body is None else body),
         13: ("ulong", seq)}
    if packager is not None:
        f[12] = ("string", packager)
    if schemas:
        f[6] = ("tables", [Table({0: ("string", n), 1: ("string", i),
                                  2: ("uint", v)}) for n, i, v in schemas])
    if attachments:
        f[11] = ("tables", [Table({0: ("string", n), 1: ("string", m),
                                   2: ("ubytes", d)})
                            for n, m, d in attachments])
    return finish(Table(f), b"TPKG")
