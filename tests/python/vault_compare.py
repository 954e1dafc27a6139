#!/usr/bin/env python3
"""Compares a vault container with a staging job, as an independent client (the Azure Python SDK).

Usage (the connection string comes from AZURE_STORAGE_CONNECTION_STRING):
  vault_compare.py CONTAINER STAGING_BLOBS_DIR

For every file under STAGING_BLOBS_DIR (relative path = blob name) the container must hold a page blob of
that name. Its page ranges are listed; every 512-byte page of the staged file that is not all zeros must lie
inside a page range; and the blob's bytes must equal the staged file's. A blob longer than its staged file
(an incremental backup appended to the volume after completion) must equal it over the staged length: the
script compares that prefix and reports the blob as grown. Blobs in the container that are not in staging are
listed as new (objects an incremental backup wrote). Prints a JSON summary; exits 1 naming every mismatch.
Used by tests/tests/complete.rs.
"""
import json
import os
import sys

from pageblobs import page_ranges, service

PAGE = 512
PIECE = 4 << 20


def covered(ranges, start, end):
    return any(s <= start and end <= e for s, e in ranges)


def staged_files(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root).replace(os.sep, "/")] = p
    return out


def compare(container, name, path, problems):
    blob = container.get_blob_client(name)
    props = blob.get_blob_properties()
    if props.blob_type != "PageBlob":
        problems.append(f"{name}: a {props.blob_type}, not a page blob")
        return None
    size = props.size
    staged = os.path.getsize(path)
    if size < staged:
        problems.append(f"{name}: {size} bytes in the vault, {staged} staged")
        return None
    ranges = page_ranges(blob)
    with open(path, "rb") as f:
        pos = 0
        while pos < staged:
            n = min(PIECE, staged - pos)
            want = f.read(n)
            got = blob.download_blob(offset=pos, length=n).readall()
            if got != want:
                at = next(i for i in range(n) if got[i] != want[i])
                problems.append(f"{name}: byte {pos + at} differs from the staged file")
                return None
            for p in range(0, n, PAGE):
                if any(want[p:p + PAGE]) and not covered(ranges, pos + p, pos + p + PAGE):
                    problems.append(f"{name}: page at {pos + p} holds data but lies in no page range")
                    return None
            pos += n
    return {"name": name, "length": size, "staged": staged, "ranges": len(ranges), "grown": size > staged}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    container = service().get_container_client(sys.argv[1])
    staged = staged_files(sys.argv[2])
    in_vault = {b.name for b in container.list_blobs()}
    problems = []
    blobs = []
    for name in sorted(staged):
        if name not in in_vault:
            problems.append(f"{name}: staged but not in the vault")
            continue
        r = compare(container, name, staged[name], problems)
        if r:
            blobs.append(r)
    summary = {
        "compared": len(blobs),
        "identical": sum(1 for b in blobs if not b["grown"]),
        "grown": [b["name"] for b in blobs if b["grown"]],
        "new": sorted(in_vault - set(staged)),
        "page_ranges": sum(b["ranges"] for b in blobs),
        "problems": problems,
    }
    print(json.dumps(summary))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
