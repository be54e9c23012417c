"""Reads dictd databases (Debian's dict-* packages: NAME.index + NAME.dict.dz) and groups
consecutive entries into documents of a few KB, so that a document holds several headwords the
way a dictionary page does instead of one 200-byte definition."""

import gzip
import re

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_number(digits):
    value = 0
    for ch in digits:
        value = value * 64 + _B64.index(ch)
    return value


def entries(index_path, dict_path):
    """Yields (headword, text) once per distinct entry, in file order. Several index lines
    (spelling variants, aliases) point at the same bytes; the database's own metadata entries
    (00-database-*, 00databaseinfo) are skipped."""
    with gzip.open(dict_path, "rb") as f:  # .dict.dz is dictzip, a gzip file with an index
        data = f.read()
    spans = {}
    with open(index_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or fields[0].startswith("00"):
                continue
            span = (_b64_number(fields[1]), _b64_number(fields[2]))
            spans.setdefault(span, fields[0])
    for (offset, length), headword in sorted(spans.items()):
        yield headword, data[offset:offset + length].decode("utf-8", "replace")


_CROSS_REF = re.compile(r"\{+([^{}]*)\}+")
_SOURCE_LINE = re.compile(r"^\s*\[[^\]\n]*(?:Webster|WordNet|PJC|Century|Chambers|Source)[^\]\n]*\]\s*$",
                          re.M)


def clean_entry(text):
    """Drops the markup of the dictd sources: {cross-reference} braces and GCIDE's per-sense
    source lines ("[1913 Webster]"), which repeat after nearly every sense."""
    text = _CROSS_REF.sub(r"\1", text)
    return _SOURCE_LINE.sub("", text)


def grouped(entry_iter, target_chars=4000):
    """Yields (first headword, text) for runs of consecutive entries of about target_chars."""
    group, size, first = [], 0, None
    for headword, text in entry_iter:
        text = clean_entry(text).strip()
        if not text:
            continue
        if first is None:
            first = headword
        group.append(text)
        size += len(text)
        if size >= target_chars:
            yield first, "\n\n".join(group)
            group, size, first = [], 0, None
    if group:
        yield first, "\n\n".join(group)
