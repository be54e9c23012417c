"""Reads R's serialisation format (XDR, versions 2 and 3) without R, enough for the data sets of
CRAN packages: lazy-load databases (data/Rdata.rdx + .rdb) and .rds files.

Debian's r-cran-* packages ship their data this way; installing R only to read a few character
vectors would pull in hundreds of megabytes, so we decode the format ourselves.
"""

import bz2
import gzip
import lzma
import struct
import zlib

# SEXP type codes (R Internals, "Serialization formats").
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP = 7, 8, 9, 10, 13, 14, 15
STRSXP, DOTSXP, VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = (
    16, 17, 19, 20, 21, 22, 23, 24, 25)
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP = 255, 254, 253, 252, 251
BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP, PERSISTSXP = 250, 249, 248, 247
EMPTYENV_SXP, BASEENV_SXP, ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 242, 241, 240, 239, 238

NA_INTEGER = -(2 ** 31)


class RObject:
    """A decoded R value: `value` is a Python list (vectors), str/None (CHARSXP) or a dict
    (pairlists, keyed by tag); `attributes` maps attribute names to decoded values."""

    def __init__(self, sexptype, value, attributes=None):
        self.sexptype = sexptype
        self.value = value
        self.attributes = attributes or {}

    def names(self):
        names = self.attributes.get("names")
        return names.value if names is not None else None


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.refs = []

    def int(self):
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def bytes(self, n):
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def length(self):
        n = self.int()
        if n == -1:  # long vector: two 32-bit halves
            hi, lo = self.int(), self.int()
            n = (hi << 32) + (lo & 0xFFFFFFFF)
        return n

    def pairlist_to_dict(self, obj):
        return obj.value if obj is not None and obj.sexptype == LISTSXP else {}

    def item(self):
        flags = self.int()
        sexptype = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))

        if sexptype == NILVALUE_SXP:
            return None
        if sexptype in (EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP,
                        MISSINGARG_SXP, BASENAMESPACE_SXP):
            return RObject(sexptype, None)
        if sexptype == REFSXP:
            index = flags >> 8
            if index == 0:
                index = self.int()
            return self.refs[index - 1]
        if sexptype == PERSISTSXP:
            obj = RObject(sexptype, self.item())
            self.refs.append(obj)
            return obj
        if sexptype == SYMSXP:
            name = self.item()
            obj = RObject(SYMSXP, name.value if name else None)
            self.refs.append(obj)
            return obj
        if sexptype in (PACKAGESXP, NAMESPACESXP):
            self.int()  # always 0
            obj = RObject(sexptype, self.item())
            self.refs.append(obj)
            return obj
        if sexptype == ENVSXP:
            obj = RObject(ENVSXP, None)
            self.refs.append(obj)
            self.int()  # locked
            enclos, frame, hashtab, attrib = self.item(), self.item(), self.item(), self.item()
            obj.value = {"enclos": enclos, "frame": frame, "hashtab": hashtab}
            obj.attributes = self.pairlist_to_dict(attrib)
            return obj
        if sexptype in (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLANGSXP, ATTRLISTSXP):
            # Pairlists are long cdr chains: walk them iteratively so that big lists do not
            # overflow Python's recursion limit.
            entries, first_attr = {}, None
            position = 0
            while True:
                attr = self.item() if has_attr else None
                if first_attr is None:
                    first_attr = attr
                tag = self.item() if has_tag else None
                car = self.item()
                key = tag.value if tag is not None and tag.sexptype == SYMSXP else position
                entries[key] = car
                position += 1
                flags = self.int()
                next_type = flags & 0xFF
                if next_type not in (LISTSXP, LANGSXP, ATTRLANGSXP, ATTRLISTSXP):
                    self.pos -= 4
                    self.item()  # the terminating cdr (normally NILVALUE)
                    break
                has_attr = bool(flags & (1 << 9))
                has_tag = bool(flags & (1 << 10))
            return RObject(LISTSXP, entries, self.pairlist_to_dict(first_attr))
        if sexptype == CHARSXP:
            n = self.int()
            return RObject(CHARSXP, None if n == -1 else self.bytes(n).decode("utf-8", "replace"))
        if sexptype == ALTREP_SXP:
            info, state, attr = self.item(), self.item(), self.item()
            return RObject(sexptype, self.expand_altrep(info, state), self.pairlist_to_dict(attr))
        if sexptype in (LGLSXP, INTSXP):
            n = self.length()
            value = list(struct.unpack_from(">%di" % n, self.data, self.pos))
            self.pos += 4 * n
        elif sexptype == REALSXP:
            n = self.length()
            value = list(struct.unpack_from(">%dd" % n, self.data, self.pos))
            self.pos += 8 * n
        elif sexptype == CPLXSXP:
            n = self.length()
            raw = struct.unpack_from(">%dd" % (2 * n), self.data, self.pos)
            self.pos += 16 * n
            value = [complex(raw[2 * i], raw[2 * i + 1]) for i in range(n)]
        elif sexptype == RAWSXP:
            value = self.bytes(self.length())
        elif sexptype == STRSXP:
            value = [self.item().value for _ in range(self.length())]
        elif sexptype in (VECSXP, EXPRSXP):
            value = [self.item() for _ in range(self.length())]
        elif sexptype == S4SXP:
            value = None
        else:
            raise ValueError("R serialisation: unsupported SEXP type %d at byte %d" % (sexptype, self.pos))
        attributes = self.pairlist_to_dict(self.item()) if has_attr else {}
        return RObject(sexptype, value, attributes)

    @staticmethod
    def expand_altrep(info, state):
        # Only the compact sequences R writes for row names and 1:n are expected in data sets.
        kind = info.value.get(0).value if info and info.value else None
        if kind in ("compact_intseq", "compact_realseq"):
            n, start, step = state.value
            return [start + i * step for i in range(int(n))]
        if kind in ("wrap_integer", "wrap_real", "wrap_string", "wrap_logical", "deferred_string"):
            inner = state.value.get(0) if isinstance(state.value, dict) else state.value[0]
            return inner.value
        raise ValueError("R serialisation: unsupported ALTREP class %r" % kind)


def unserialize(data):
    """Decodes one serialised R object (the bytes after decompression)."""
    if data[:2] != b"X\n":
        raise ValueError("R serialisation: only the XDR format is supported, got %r" % data[:2])
    reader = _Reader(data)
    reader.pos = 2
    version = reader.int()
    reader.int()  # writer's R version
    reader.int()  # minimal reader R version
    if version == 3:
        reader.bytes(reader.int())  # native encoding name
    return reader.item()


def read_rds(path):
    with open(path, "rb") as f:
        raw = f.read()
    for opener in (gzip.decompress, bz2.decompress, lzma.decompress):
        try:
            raw = opener(raw)
            break
        except (OSError, ValueError, lzma.LZMAError):
            continue
    return unserialize(raw)


def _lazyload_blob(blob):
    # Each entry of an .rdb is a 4-byte big-endian uncompressed length followed by zlib data, or
    # for R's other compressions a type byte ('2' bzip2, 'Z' xz, '0' none) after the length.
    out_len = struct.unpack(">I", blob[:4])[0]
    try:
        data = zlib.decompress(blob[4:])
    except zlib.error:
        kind, payload = blob[4:5], blob[5:]
        if kind == b"2":
            data = bz2.decompress(payload)
        elif kind == b"Z":
            data = lzma.decompress(payload)
        elif kind == b"0":
            data = payload
        else:
            raise
    if len(data) != out_len:
        raise ValueError("R lazy-load entry: expected %d bytes, got %d" % (out_len, len(data)))
    return data


def read_lazyload(rdx_path):
    """Returns {variable name: RObject} from a lazy-load database (path of the .rdx; the .rdb
    beside it holds the data)."""
    index = read_rds(rdx_path)
    fields = dict(zip(index.names(), index.value))
    variables = fields["variables"]
    with open(rdx_path[:-4] + ".rdb", "rb") as f:
        rdb = f.read()
    result = {}
    for name, pos in zip(variables.names(), variables.value):
        offset, length = int(pos.value[0]), int(pos.value[1])
        result[name] = unserialize(_lazyload_blob(rdb[offset:offset + length]))
    return result
