"""Turns raw (id, text) documents into the corpus's JSONL records: text clean-up, splitting of
long documents, duplicate removal, the deterministic per-domain cap, and writing.

Everything here is a pure function of its input, so the same packages give byte-identical files.
"""

import hashlib
import json
import os
import re
import unicodedata

import numpy as np

MIN_DOC_CHARS = 100  # below this a "document" is a heading, a stub or an empty page

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text):
    """Normalises line ends and Unicode form, drops control characters (form feeds, NULs,
    BOMs) and runs of blank lines; keeps indentation, which carries meaning in code and docs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip()


def looks_like_text(text):
    """False for what survived decoding but is not prose or code: mostly symbols or digits
    (data tables, base64 blobs, encoded images)."""
    if not text:
        return False
    letters = sum(ch.isalpha() for ch in text)
    return letters / len(text) >= 0.25 and text.count("\ufffd") <= len(text) // 1000


def _pieces(text, separator):
    parts = text.split(separator)
    return [p + separator for p in parts[:-1]] + [parts[-1]]


def _split_sentences(text):
    return [p for p in re.split(r"(?<=[.!?])(?= )", text) if p]


def split_long(text, max_chars):
    """Splits a document into parts of at most ~max_chars, at paragraph boundaries where it can,
    else line boundaries, else sentence ends (some sources, e.g. the State of the Union
    addresses, have no line breaks at all)."""
    if max_chars <= 0 or len(text) <= max_chars:
        return [text]
    units = []
    for paragraph in _pieces(text, "\n\n"):
        if len(paragraph) <= max_chars:
            units.append(paragraph)
            continue
        for line in _pieces(paragraph, "\n"):
            if len(line) <= max_chars:
                units.append(line)
            else:
                units.extend(_split_sentences(line))
    parts, current = [], ""
    for unit in units:
        if current and len(current) + len(unit) > max_chars:
            parts.append(current)
            current = ""
        current += unit
    if current:
        parts.append(current)
    # A short tail reads better merged into the previous part than as its own document.
    if len(parts) > 1 and len(parts[-1]) < max_chars // 4:
        tail = parts.pop()
        parts[-1] += tail
    # Only blank lines are trimmed: a part of a code file keeps its first line's indentation.
    return [p.strip("\n").rstrip() for p in parts if p.strip()]


def keep_fraction_threshold(cap_bytes, domain_bytes):
    """The fraction of a domain that a cap keeps; 1.0 when the domain already fits."""
    if cap_bytes <= 0 or domain_bytes <= cap_bytes:
        return 1.0
    return cap_bytes / domain_bytes


def hash_fraction(doc_id):
    """sha256 of the id as a number in [0, 1): the same id is kept or dropped by every run, and
    which ids are kept does not depend on the order or the number of the other documents."""
    return int(hashlib.sha256(doc_id.encode("utf-8")).hexdigest(), 16) / float(1 << 256)


class NearDuplicates:
    """Finds documents whose word 5-gram sets overlap by a Jaccard similarity of about
    `threshold` or more with a document seen before: licence variants (GPL-3.0-only vs
    GPL-3.0-or-later), a file vendored twice with a changed header, a mail quoting another in
    full. Exact-duplicate removal misses these, and they would leak between the training and
    held-out splits.

    MinHash with one permutation hashing (64 bins of one 64-bit hash per 5-gram) and LSH (16
    bands of 4 bins) to find candidates. Python's str hash must be fixed (PYTHONHASHSEED=0) for
    the same input to give the same decisions; build.py sees to that.
    """

    BINS, BAND_ROWS = 64, 4
    _WORD = re.compile(r"\w+")

    def __init__(self, threshold=0.8):
        self.threshold = threshold
        self.bands = {}  # (band, values) -> index into self.signatures
        self.signatures = []

    def signature(self, text):
        words = self._WORD.findall(text.lower())
        if len(words) < 5:
            words = words + [""] * (5 - len(words))
        grams = zip(words, words[1:], words[2:], words[3:], words[4:])
        hashes = np.fromiter(map(hash, grams), dtype=np.int64, count=len(words) - 4).view(np.uint64)
        bins = hashes & np.uint64(self.BINS - 1)
        values = hashes >> np.uint64(6)  # log2(BINS) bits went to the bin
        order = np.lexsort((values, bins))
        first = np.unique(bins[order], return_index=True)
        signature = np.full(self.BINS, np.iinfo(np.uint64).max, dtype=np.uint64)
        signature[first[0].astype(np.int64)] = values[order][first[1]]
        return signature

    def seen_similar(self, text):
        """True when a previously added text is a near duplicate; otherwise remembers this one."""
        signature = self.signature(text)
        empty = np.iinfo(np.uint64).max
        keys = []
        for b in range(self.BINS // self.BAND_ROWS):
            band = signature[b * self.BAND_ROWS:(b + 1) * self.BAND_ROWS]
            if not np.all(band == empty):  # short texts leave bins empty: no evidence
                keys.append((b, band.tobytes()))
        candidates = {self.bands[k] for k in keys if k in self.bands}
        for index in sorted(candidates):
            other = self.signatures[index]
            filled = (signature != empty) | (other != empty)
            if np.sum((signature == other) & filled) >= self.threshold * np.sum(filled):
                return True
        index = len(self.signatures)
        self.signatures.append(signature)
        for key in keys:
            self.bands.setdefault(key, index)
        return False


class DomainBuilder:
    """Collects one domain's documents, then cleans, deduplicates, splits and caps them."""

    def __init__(self, domain, max_doc_chars=0, min_chars=MIN_DOC_CHARS):
        self.domain = domain
        self.max_doc_chars = max_doc_chars
        self.min_chars = min_chars
        self.docs = []  # (id, text, group), in the order the sources yield them
        self.ids = set()
        self.text_hashes = set()
        self.near_duplicates = NearDuplicates()
        self.dropped = {"short_or_not_text": 0, "duplicate_text": 0, "near_duplicate": 0}

    def add(self, doc_id, text):
        if doc_id in self.ids:
            raise ValueError("duplicate document id %r in domain %s" % (doc_id, self.domain))
        self.ids.add(doc_id)
        text = clean_text(text)
        if len(text) < self.min_chars or not looks_like_text(text):
            self.dropped["short_or_not_text"] += 1
            return
        # Identical texts reach us from different packages (the same licence, the same JS file
        # vendored twice): keep the first, so that no text counts twice in training or eval.
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        if digest in self.text_hashes:
            self.dropped["duplicate_text"] += 1
            return
        self.text_hashes.add(digest)
        if self.near_duplicates.seen_similar(text):
            self.dropped["near_duplicate"] += 1
            return
        parts = split_long(text, self.max_doc_chars)
        # The parts of one document share a group: the cap and lory-data's held-out split treat
        # them as one, so a document never ends up half in training and half held out.
        if len(parts) == 1:
            self.docs.append((doc_id, text, doc_id))
        else:
            for i, part in enumerate(parts, 1):
                self.docs.append(("%s/part%d" % (doc_id, i), part, doc_id))

    def capped(self, cap_bytes):
        """The documents the cap keeps, plus (docs, bytes) before the cap."""
        total = sum(len(t.encode("utf-8")) for _, t, _ in self.docs)
        threshold = keep_fraction_threshold(cap_bytes, total)
        kept = [d for d in self.docs if threshold >= 1.0 or hash_fraction(d[2]) < threshold]
        return kept, len(self.docs), total


def source_of(doc_id):
    """The source component of an id: books/austen/emma/ch01 -> austen."""
    parts = doc_id.split("/")
    return parts[1] if len(parts) > 2 else parts[0]


def write_jsonl(path, domain, docs):
    """Writes records atomically; returns (docs, text bytes, file sha256, per-source counts)."""
    tmp = path + ".tmp"
    digest = hashlib.sha256()
    text_bytes = 0
    per_source = {}
    with open(tmp, "wb") as f:
        for doc_id, text, group in docs:
            record = {"id": doc_id, "domain": domain, "text": text}
            if group != doc_id:
                record["group"] = group
            line = json.dumps(record, ensure_ascii=False) + "\n"
            data = line.encode("utf-8")
            f.write(data)
            digest.update(data)
            n = len(text.encode("utf-8"))
            text_bytes += n
            stats = per_source.setdefault(source_of(doc_id), {"docs": 0, "bytes": 0})
            stats["docs"] += 1
            stats["bytes"] += n
    os.replace(tmp, path)
    return len(docs), text_bytes, digest.hexdigest(), dict(sorted(per_source.items()))
