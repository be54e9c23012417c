"""Writes data/sample/README.md from the sources.json of the fetch-corpus run that made the
sample, so that the counts, package versions and licences it states are the measured ones.

Usage: sample_readme.py SOURCES_JSON SAMPLE_DIR SOURCES_SPEC (the --sources given to fetch-corpus)
"""

import gzip
import json
import os
import sys

INTRO = """\
# data/sample: a small multi-domain English corpus

A committed extract of the corpus that `scripts/fetch-corpus` builds from Debian and npm
packages, for the offline quickstart (`scripts/quickstart`) and for tests. Each file is gzipped
JSONL, one document a line: `{{"id": "...", "domain": "...", "text": "..."}}`. Ids name where a
text came from (`books/austen/emma/ch012`); documents longer than {max_kb:g} kB are split at
paragraph boundaries into `.../part1`, `.../part2`, ..., which share a `"group"` (the original id):
lory-data holds out a group's parts together.

Only public-domain or permissively licensed texts are included. Left out on purpose: the Brown
corpus (its notice says "redistribution permitted" without saying for which uses), Reuters-21578
(research use only), SpamAssassin mail (real people's names and addresses), licence texts that
are not OSI-approved (not all of them say they may be copied), and rendered man pages (their
licences ask that the copyright notice travel with the text, which rendering drops). Those are
in the full corpus that `scripts/fetch-corpus` builds locally, which is never committed.

Within a domain, exact and near duplicates (word 5-gram Jaccard similarity of about 0.8 or more)
are removed, keeping the first; so the Debian copies of the GPL, LGPL, Apache and other licences
give way to the SPDX texts that come before them.

Regenerate (needs root or sudo for the SWORD modules, and the Debian and npm registries):

    scripts/make-sample-corpus

It runs

    scripts/fetch-corpus --domains {domains} \\
      --sources {sources} \\
      --cap-mb {cap_mb:g} --max-doc-kb {max_kb:g} --no-prepare --out results/corpora/sample-source

and gzips each JSONL file with `gzip -n` (no name or time stamp), so the same package versions
give byte-identical files. Within a domain a document is kept when
sha256(group) / 2^256 < cap / domain size, so every source stays represented.
"""


def main():
    sources_json, sample_dir, sources_spec = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(sources_json, encoding="utf-8") as f:
        manifest = json.load(f)
    domains = manifest["domains"]
    lines = [INTRO.format(max_kb=manifest["max_doc_kb"], cap_mb=manifest["cap_mb_per_domain"],
                          domains=",".join(domains), sources=sources_spec)]

    lines.append("## Contents\n")
    lines.append("| domain | documents | text (bytes) | file (bytes, gzipped) | sources (documents) |")
    lines.append("|---|---:|---:|---:|---|")
    total_docs = total_bytes = total_gz = 0
    for domain, info in domains.items():
        gz_path = os.path.join(sample_dir, domain + ".jsonl.gz")
        gz_bytes = os.path.getsize(gz_path)
        with gzip.open(gz_path, "rb") as f:
            docs = sum(1 for _ in f)
        if docs != info["docs"]:
            raise SystemExit("%s has %d documents, sources.json says %d" % (gz_path, docs, info["docs"]))
        per_source = ", ".join("%s (%d)" % (name, s["docs"]) for name, s in info["sources"].items())
        lines.append("| %s | %d | %d | %d | %s |" % (domain, info["docs"], info["bytes"], gz_bytes, per_source))
        total_docs += info["docs"]
        total_bytes += info["bytes"]
        total_gz += gz_bytes
    lines.append("| **total** | %d | %d | %d | |\n" % (total_docs, total_bytes, total_gz))

    lines.append("## Sources and licences\n")
    for domain, info in domains.items():
        for name, s in info["sources"].items():
            lines.append("- `%s/%s`: %s" % (domain, name, s["licence"]))
    lines.append("")
    lines.append("Python's documentation and standard library: Copyright (c) 2001-2023 Python Software "
                 "Foundation; All Rights Reserved; used under the PSF License Agreement (PSF-2.0). "
                 "Texts keep their own copyright headers where the source has them.\n")

    lines.append("## Packages and versions\n")
    packages = manifest["packages"]
    for kind, title in (("apt_downloaded", "Debian, downloaded and unpacked"),
                        ("apt_installed", "Debian, installed"),
                        ("system", "Debian, read in place"), ("npm", "npm")):
        if packages.get(kind):
            entries = ", ".join("`%s` %s" % (p["name"], p["version"]) for p in packages[kind])
            lines.append("- %s: %s" % (title, entries))
    if packages.get("sword_modules"):
        entries = ", ".join("`%s` %s" % kv for kv in packages["sword_modules"].items())
        lines.append("- SWORD modules: %s" % entries)
    lines.append("")

    with open(os.path.join(sample_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
