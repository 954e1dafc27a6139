#!/usr/bin/env python3
"""Independent reader of seedship shipping drives (end-to-end check of seedship-diskprep).

Uses none of seedship's code: cryptsetup 2.6 gives each drive's volume key and data segment, Python
`cryptography` AES-XTS decrypts the payload (tweak = 512-byte sector number counted from the data segment's
start, 4096-byte sectors), GNU tar extracts it, xml.etree parses DriveManifest.xml, hashlib checks every
PageRange's MD5 against the extracted part file (and every Block of a block blob's BlockList: in order,
without gaps, covering the whole Length, never split into parts, Ids on all blocks or none, each Id Base64 of
the same length), and every staging blob is reassembled from the parts of all drives (zeros where no range)
and compared with the staging file (SHA-256).

    drive_check.py --job STAGING/JOB --work DIR --drive IMAGE:KEYFILE [--drive IMAGE:KEYFILE]...

KEYFILE holds the drive's recovery key (the LUKS passphrase) without a newline. DIR must be empty or
missing; it receives one folder per drive. Prints one JSON object: per drive its id, manifest text with
the DriveId normalised to "DRIVE", and range count; per blob its length, how many bytes the ranges (blocks)
held, its part count and its type (PageBlob or BlockBlob).
Exits 1 with a message naming the drive, blob and offset on any mismatch. The volume key is never printed.
"""
import argparse
import base64
import binascii
import hashlib
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CHUNK = 8 << 20
MAX_BLOCK = 4 << 20
MAX_BLOCKS = 50000
PART_RE = re.compile(r"^seedship-part:index=(\d+);start=(\d+);end=(\d+)$")


def fail(msg):
    print("drive_check: " + msg, file=sys.stderr)
    sys.exit(1)


def cryptsetup(args):
    out = subprocess.run(["cryptsetup"] + args, capture_output=True, text=True)
    if out.returncode != 0:
        fail("cryptsetup %s failed: %s" % (args[0], out.stderr.strip()))
    return out.stdout


def volume_key(image, keyfile):
    out = cryptsetup(["luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyfile, image])
    key = bytearray()
    in_dump = False
    for line in out.splitlines():
        if "dump:" in line:
            in_dump = True
            line = line.split("dump:", 1)[1]
        elif not in_dump:
            continue
        parts = [t for t in line.split() if re.fullmatch(r"[0-9a-fA-F]{2}", t)]
        if not parts:
            break
        key += bytes(int(t, 16) for t in parts)
    if len(key) != 64:
        fail("%s: expected a 64-byte volume key from cryptsetup, got %d bytes" % (image, len(key)))
    return bytes(key)


def data_segment(image):
    out = cryptsetup(["luksDump", image])
    seg = out.split("Data segments:", 1)[1].split("Keyslots:", 1)[0]
    offset = int(re.search(r"offset:\s*(\d+) \[bytes\]", seg).group(1))
    sector = int(re.search(r"sector:\s*(\d+) \[bytes\]", seg).group(1))
    cipher = re.search(r"cipher:\s*(\S+)", seg).group(1)
    if cipher != "aes-xts-plain64":
        fail("%s: data segment cipher %s, expected aes-xts-plain64" % (image, cipher))
    return offset, sector


def decrypt_payload(image, key, offset, sector, out_path):
    """Decrypts the whole data segment into out_path (a plain tar stream followed by whatever)."""
    size = os.path.getsize(image)
    length = (size - offset) // sector * sector
    with open(image, "rb") as src, open(out_path, "wb") as dst:
        src.seek(offset)
        done = 0
        while done < length:
            data = src.read(min(CHUNK, length - done))
            if not data or len(data) % sector:
                fail("%s: short read at payload offset %d" % (image, done))
            out = bytearray()
            for i in range(0, len(data), sector):
                tweak = ((done + i) // 512).to_bytes(16, "little")
                d = Cipher(algorithms.AES(key), modes.XTS(tweak)).decryptor()
                out += d.update(data[i : i + sector]) + d.finalize()
            dst.write(out)
            done += len(data)


def local(tag):
    return tag.rsplit("}", 1)[-1]


def child(el, name):
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def text_of(el, name):
    c = child(el, name)
    return None if c is None else (c.text or "").strip()


def check_drive(n, image, keyfile, work):
    key = volume_key(image, keyfile)
    offset, sector = data_segment(image)
    ddir = os.path.join(work, "drive%d" % n)
    os.makedirs(os.path.join(ddir, "files"))
    tar_path = os.path.join(ddir, "payload.tar")
    decrypt_payload(image, key, offset, sector, tar_path)
    t = subprocess.run(["tar", "-xf", tar_path, "-C", os.path.join(ddir, "files")], capture_output=True, text=True)
    if t.returncode != 0:
        fail("%s: GNU tar cannot extract the payload: %s" % (image, t.stderr.strip()))
    os.remove(tar_path)
    mpath = os.path.join(ddir, "files", "DriveManifest.xml")
    if not os.path.exists(mpath):
        fail("%s: the payload holds no DriveManifest.xml" % image)
    with open(mpath, "rb") as f:
        manifest = f.read()
    root = ET.fromstring(manifest)
    drive = child(root, "Drive")
    if drive is None:
        fail("%s: manifest has no Drive element" % image)
    drive_id = text_of(drive, "DriveId")
    parts = []
    ranges = 0
    # One BlobList per copy session (a drive prepared with several prepimport sessions has several).
    blobs = [b for bl in drive if local(bl.tag) == "BlobList" for b in bl if local(b.tag) == "Blob"]
    for blob in blobs:
        blob_path = text_of(blob, "BlobPath")
        file_path = text_of(blob, "FilePath").replace("\\", "/").lstrip("/")
        client = text_of(blob, "ClientData") or ""
        m = PART_RE.match(client)
        part_file = os.path.join(ddir, "files", file_path)
        if not os.path.isfile(part_file):
            fail("%s: %s: part file %s is not in the payload" % (image, blob_path, file_path))
        fsize = os.path.getsize(part_file)
        if m:
            index, start, end = int(m.group(1)), int(m.group(2)), int(m.group(3))
        else:
            index, start, end = 1, 0, fsize
        if end - start != fsize:
            fail("%s: %s: part %d spans [%d,%d) but its file holds %d bytes" % (image, blob_path, index, start, end, fsize))
        pl = child(blob, "PageRangeList")
        bl = child(blob, "BlockList")
        prs = []
        if bl is not None:
            if pl is not None:
                fail("%s: %s: both a PageRangeList and a BlockList" % (image, blob_path))
            if m:
                fail("%s: %s: a block blob is split into parts (%s)" % (image, blob_path, client))
            prs = check_blocks(image, blob_path, bl, part_file, int(text_of(blob, "Length")))
            ranges += len(prs)
            parts.append({"blob": blob_path, "length": int(text_of(blob, "Length")), "index": 1, "start": 0, "end": fsize, "file": part_file, "ranges": prs, "type": "BlockBlob"})
            continue
        with open(part_file, "rb") as pf:
            for pr in pl if pl is not None else []:
                if local(pr.tag) != "PageRange":
                    continue
                off, ln = int(pr.get("Offset")), int(pr.get("Length"))
                want = bytes.fromhex(pr.get("Hash"))
                if off < start or off + ln > end:
                    fail("%s: %s: range at %d (+%d) lies outside part [%d,%d)" % (image, blob_path, off, ln, start, end))
                pf.seek(off - start)
                got = hashlib.md5(pf.read(ln)).digest()
                if got != want:
                    fail("%s: %s: MD5 of range at blob offset %d (+%d) does not match the manifest" % (image, blob_path, off, ln))
                prs.append((off, ln))
                ranges += 1
        parts.append({"blob": blob_path, "length": int(text_of(blob, "Length")), "index": index, "start": start, "end": end, "file": part_file, "ranges": prs, "type": "PageBlob"})
    normalised = manifest.replace(drive_id.encode(), b"DRIVE").decode("utf-8").rstrip()
    return {"drive_id": drive_id, "manifest": normalised, "ranges": ranges}, parts


def check_blocks(image, blob_path, bl, part_file, length):
    """The blocks of a BlockList, checked against the drive file; returns their (offset, length)."""
    blocks = [b for b in bl if local(b.tag) == "Block"]
    if len(blocks) > MAX_BLOCKS:
        fail("%s: %s: %d blocks, more than %d" % (image, blob_path, len(blocks), MAX_BLOCKS))
    ids = [b.get("Id") for b in blocks]
    if any(i is not None for i in ids) and any(i is None for i in ids):
        fail("%s: %s: some blocks have an Id and some do not" % (image, blob_path))
    decoded = set()
    for i in ids:
        if i is None:
            continue
        try:
            decoded.add(len(base64.b64decode(i, validate=True)))
        except (binascii.Error, ValueError):
            fail("%s: %s: block Id %r is not Base64" % (image, blob_path, i))
    if len(decoded) > 1:
        fail("%s: %s: block Ids decode to different lengths %s" % (image, blob_path, sorted(decoded)))
    out = []
    at = 0
    with open(part_file, "rb") as pf:
        for b in blocks:
            off, ln = int(b.get("Offset")), int(b.get("Length"))
            if off != at:
                fail("%s: %s: block at %d, expected %d (a gap or overlap)" % (image, blob_path, off, at))
            if ln <= 0 or ln > MAX_BLOCK:
                fail("%s: %s: block at %d has length %d" % (image, blob_path, off, ln))
            pf.seek(off)
            got = hashlib.md5(pf.read(ln)).digest()
            if got != bytes.fromhex(b.get("Hash")):
                fail("%s: %s: MD5 of block at blob offset %d (+%d) does not match the manifest" % (image, blob_path, off, ln))
            out.append((off, ln))
            at = off + ln
    if at != length:
        fail("%s: %s: the blocks cover %d bytes, Length is %d" % (image, blob_path, at, length))
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(CHUNK), b""):
            h.update(b)
    return h.hexdigest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--job", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--drive", action="append", required=True)
    a = p.parse_args()
    with open(os.path.join(a.job, "job.json")) as f:
        job = json.load(f)
    container = job["container"]
    os.makedirs(a.work, exist_ok=True)
    drives, parts = [], []
    for n, spec in enumerate(a.drive, 1):
        image, keyfile = spec.rsplit(":", 1)
        d, ps = check_drive(n, image, keyfile, a.work)
        drives.append(d)
        parts += ps
    blobs = {}
    for b in job["blobs"]:
        path = container + "/" + b["name"]
        mine = sorted((p for p in parts if p["blob"] == path), key=lambda p: p["start"])
        if not mine:
            fail("staging blob %s is on no drive" % path)
        # Parts must tile [0, len) exactly once, in index order.
        at = 0
        for i, pt in enumerate(mine, 1):
            if pt["index"] != i or pt["start"] != at:
                fail("%s: part %d starts at %d, expected part %d at %d (a gap or overlap)" % (path, pt["index"], pt["start"], i, at))
            at = pt["end"]
        if any(pt["length"] != b["len"] for pt in mine):
            fail("%s: a manifest gives Length %s, the staging blob holds %d bytes" % (path, [pt["length"] for pt in mine], b["len"]))
        if at != b["len"]:
            fail("%s: parts end at %d, the staging blob holds %d bytes" % (path, at, b["len"]))
        out = os.path.join(a.work, "blob.reassembled")
        covered = 0
        last_end = 0
        with open(out, "wb") as o:
            o.truncate(b["len"])
            for pt in mine:
                with open(pt["file"], "rb") as pf:
                    for off, ln in sorted(pt["ranges"]):
                        if off < last_end:
                            fail("%s: range at %d overlaps the previous one (ends %d)" % (path, off, last_end))
                        last_end = off + ln
                        pf.seek(off - pt["start"])
                        o.seek(off)
                        o.write(pf.read(ln))
                        covered += ln
        staged = os.path.join(a.job, "blobs", b["name"])
        if sha256_file(out) != sha256_file(staged):
            with open(out, "rb") as x, open(staged, "rb") as y:
                pos = 0
                while True:
                    u, v = x.read(4096), y.read(4096)
                    if u != v or not u:
                        break
                    pos += 4096
            fail("%s: reassembled from the drives differs from staging near byte %d" % (path, pos))
        os.remove(out)
        types = sorted(set(pt["type"] for pt in mine))
        if len(types) != 1:
            fail("%s: parts of different blob types %s" % (path, types))
        blobs[b["name"]] = {"len": b["len"], "covered": covered, "parts": len(mine), "type": types[0]}
    print(json.dumps({"drives": drives, "blobs": blobs}, sort_keys=True))


if __name__ == "__main__":
    main()
