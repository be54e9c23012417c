"""Readers for technical documentation formats: man pages (rendered with man-db), GNU info
files, Vim help files and Sphinx reST sources. Each yields plain text as a person reads it,
without the formatting codes of its format."""

import concurrent.futures
import gzip
import os
import re
import subprocess

# --- man pages -----------------------------------------------------------------------------

_MAN_ENV = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="",
                MANPAGER="cat", PAGER="cat")


def _read_maybe_gz(path):
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def is_man_alias(path):
    """True for pages that only say `.so other-page` (aliases rendered elsewhere)."""
    head = _read_maybe_gz(path)[:200].lstrip()
    return head.startswith(b".so ") or head.startswith(b"'so ")


def render_man(path):
    """Renders one page as man shows it in an 80-column terminal, without justification or
    hyphenation (--nj --nh) so that words are not broken or padded with extra spaces, and
    without the backspace overstriking that marks bold and underline (col -bx)."""
    man = subprocess.run(["man", "--nj", "--nh", "-E", "UTF-8", "-l", path],
                         env=_MAN_ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         check=False)
    if man.returncode != 0:
        return ""
    col = subprocess.run(["col", "-bx"], input=man.stdout, stdout=subprocess.PIPE,
                         env=_MAN_ENV, check=True)
    return col.stdout.decode("utf-8", "replace")


def render_man_pages(paths, workers=None):
    """Renders pages in parallel (groff is single-threaded and most of the domain's time);
    returns texts in the order of paths."""
    workers = workers or max(1, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(render_man, paths))


# --- GNU info ------------------------------------------------------------------------------

_INFO_HEADER = re.compile(r"^File: [^,]+,\s+Node: ([^,\n]+)", re.M)


def info_nodes(path):
    """Yields (node name, text) for each node of an info file; skips the tag table and nodes
    that are only menus or indexes (lists of '* entry:: ...' lines)."""
    text = _read_maybe_gz(path).decode("utf-8", "replace")
    for chunk in text.split("\x1f"):
        chunk = chunk.lstrip("\n")
        match = _INFO_HEADER.match(chunk)
        if not match:
            continue
        body = chunk[chunk.find("\n") + 1:]
        lines = [line for line in body.splitlines() if line.strip()]
        menu_lines = sum(1 for line in lines if line.startswith("* "))
        if not lines or menu_lines > len(lines) / 2:
            continue
        yield match.group(1).strip(), body


# --- Vim help ------------------------------------------------------------------------------

_VIM_RULE = re.compile(r"^={20,}\s*$", re.M)
_VIM_LINK = re.compile(r"\|([^|\s]+)\|")
_VIM_TAG = re.compile(r"(?<![\w*])\*([^\s*|]+)\*(?![\w*])")
_VIM_MODELINE = re.compile(r"^\s*vim?:.*$", re.M)
_VIM_HEADING_MARK = re.compile(r" ~$", re.M)


def vim_help_sections(path):
    """Yields (section number, text) for the sections of a Vim help file (separated by rules
    of '='), with help-link bars, *tag* anchors, heading markers and the modeline removed."""
    text = _read_maybe_gz(path).decode("utf-8", "replace")
    for number, section in enumerate(_VIM_RULE.split(text), 1):
        section = _VIM_MODELINE.sub("", section)
        section = _VIM_TAG.sub("", section)
        section = _VIM_LINK.sub(r"\1", section)
        section = _VIM_HEADING_MARK.sub("", section)
        yield number, section


# --- reST ----------------------------------------------------------------------------------

_RST_RFC_PEP = re.compile(r":(rfc|pep):`(?:[^`<]*<)?(\d+)(?:#[^`>]*)?>?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]+>`__?")
_RST_FOOTNOTE_REF = re.compile(r"\s*\[#[^\]]*\]_")
_RST_ROLE = re.compile(r":(?:[a-z]+:)?[a-z]+:`~?!?([^`<]*?)(?:\s*<[^`>]*>)?`")
_RST_LABEL = re.compile(r"^\.\. _[^:\n]+:\s*$\n?", re.M)
_RST_META_DIRECTIVE = re.compile(
    r"^\.\. (?:index|highlight|sectionauthor|moduleauthor|toctree|kernel-doc|only|"
    r"include|raw|SPDX-License-Identifier|c:namespace|tabularcolumns|contents)\b.*\n(?:[ \t]+.*\n|[ \t]*\n)*",
    re.M)


def rst_text(path):
    """A Sphinx source as readable reST: keeps headings, lists and code blocks, but turns
    roles (:func:`open`) into their text and drops labels and directives that only steer the
    build (index entries, toctrees, kernel-doc extraction)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    text = _RST_META_DIRECTIVE.sub("", text)
    text = _RST_LABEL.sub("", text)
    text = _RST_RFC_PEP.sub(lambda m: "%s %s" % (m.group(1).upper(), m.group(2)), text)
    text = _RST_LINK.sub(r"\1", text)
    text = _RST_FOOTNOTE_REF.sub("", text)
    return _RST_ROLE.sub(lambda m: "`%s`" % m.group(1).strip(), text)
