"""Reads installed SWORD modules (Bibles and verse-keyed commentaries) through Debian's
python3-sword binding and returns their text chapter by chapter.

We convert the raw OSIS/ThML markup ourselves rather than use SWORD's stripText(): that drops
footnotes by deleting them, which glues the words on either side together ("Godcreated"), and
it renders emphasis as "* ... *". The `diatheke` CLI is no better: it repeats a psalm's heading
before every later verse.
"""

import html
import re

_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.S)
_SELF_CLOSING_NOTE = re.compile(r"<note\b[^>]*/>")
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title>", re.S)
_BREAK = re.compile(r"<(?:lb|l|lg|p|div)\b[^>]*type=\"x-p\"[^>]*/?>|<p\b[^>]*>|</p>|<br\s*/?>", re.S)
_LINE = re.compile(r"<l\b[^>]*\beID=[^>]*/>|</l>")
_TAG = re.compile(r"<[^>]+>")
_GAP = "\u0000"  # marks where a note was, to decide whether the words around it need a space


def osis_to_text(raw):
    text = _NOTE.sub(_GAP, raw)
    text = _SELF_CLOSING_NOTE.sub(_GAP, text)
    text = _TITLE.sub(lambda m: "\n" + m.group(1) + "\n", text)
    text = _BREAK.sub("\n\n", text)
    text = _LINE.sub("\n", text)
    text = _TAG.sub("", text)
    text = re.sub(r"(?<=\w)" + _GAP + r"+(?=\w)", " ", text)
    text = text.replace(_GAP, "")
    text = html.unescape(text)
    # The KJV marks paragraph starts with a pilcrow; a paragraph break says the same in plain text.
    text = re.sub(r"\s*\u00b6\s*", "\n\n", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    # A leading break is kept: it says that this verse starts a paragraph.
    return text.strip(" ") if text.strip() else ""


def _load_sword():
    try:
        import Sword  # noqa: PLC0415 (python3-sword is only needed for the religious domain)
    except ImportError as exc:
        raise SystemExit("religious domain: python3-sword is missing (%s); run with Debian's "
                         "/usr/bin/python3 after `apt-get install python3-sword`" % exc)
    return Sword


def module_versions():
    """{module name: SWORD module version} of every installed module."""
    Sword = _load_sword()
    manager = Sword.SWMgr()
    names = sorted(str(name) for name in manager.getModules().keys())
    return {name: str(manager.getModule(name).getConfigEntry("Version") or "") for name in names}


def chapters(module_name, entry_separator=" "):
    """Yields (book name, chapter number, text) for each chapter with text, in canonical order.
    Entries (verses, or a commentary's notes) are joined by entry_separator; poetry lines and
    paragraphs inside them keep their line breaks."""
    Sword = _load_sword()
    manager = Sword.SWMgr()
    module = manager.getModule(module_name)
    if module is None:
        raise SystemExit("religious domain: SWORD module %s is not installed" % module_name)
    # Commentaries link one note to a range of verses; reading each link once avoids repeats.
    module.setSkipConsecutiveLinks(True)
    module.setPosition(Sword.SW_POSITION(1))  # POS_TOP
    current, pieces = None, []
    # popError() returns a one-character string, "\x00" while there is no error.
    while ord(module.popError()) == 0:
        key = Sword.VerseKey.castTo(module.getKey())
        where = (key.getBookName(), key.getChapter())
        if where != current:
            if current is not None and pieces:
                yield current[0], current[1], _join(pieces, entry_separator)
            current, pieces = where, []
        verse = osis_to_text(module.getRawEntry())
        if verse:
            pieces.append(verse)
        module.increment()
    if current is not None and pieces:
        yield current[0], current[1], _join(pieces, entry_separator)


def _join(pieces, separator):
    text = ""
    for piece in pieces:
        if text and not text.endswith("\n") and not piece.startswith("\n"):
            text += separator
        text += piece
    return text
