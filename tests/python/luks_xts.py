#!/usr/bin/env python3
"""Independent AES-XTS over the data segment of a LUKS2 image (interop check for shared/src/luks).

Uses the `cryptography` package's AES-XTS, not seedship's code. The tweak of a sector is its
dm-crypt plain64 IV: the payload byte offset divided by 512 (512-byte sector number, no
iv_large_sectors), little-endian in 16 bytes.

    luks_xts.py decrypt --key-file K --image IMG --data-offset N --payload-offset N --length N --output F
    luks_xts.py encrypt --key-file K --image IMG --data-offset N --payload-offset N --input F

The key file holds the raw 64-byte volume key. encrypt writes the ciphertext of F into IMG.
"""
import argparse

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def crypt_sectors(key, data, payload_offset, sector_size, encrypt):
    out = bytearray()
    for i in range(0, len(data), sector_size):
        tweak = ((payload_offset + i) // 512).to_bytes(16, "little")
        c = Cipher(algorithms.AES(key), modes.XTS(tweak))
        op = c.encryptor() if encrypt else c.decryptor()
        out += op.update(data[i : i + sector_size]) + op.finalize()
    return bytes(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["encrypt", "decrypt"])
    p.add_argument("--key-file", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--data-offset", type=int, required=True)
    p.add_argument("--payload-offset", type=int, required=True)
    p.add_argument("--sector-size", type=int, default=4096)
    p.add_argument("--length", type=int)
    p.add_argument("--input")
    p.add_argument("--output")
    a = p.parse_args()
    with open(a.key_file, "rb") as f:
        key = f.read()
    assert len(key) == 64, "the volume key must be 64 bytes"
    assert a.payload_offset % a.sector_size == 0
    at = a.data_offset + a.payload_offset
    if a.mode == "decrypt":
        assert a.length % a.sector_size == 0
        with open(a.image, "rb") as f:
            f.seek(at)
            data = f.read(a.length)
        assert len(data) == a.length, "image too short"
        with open(a.output, "wb") as f:
            f.write(crypt_sectors(key, data, a.payload_offset, a.sector_size, False))
    else:
        with open(a.input, "rb") as f:
            data = f.read()
        assert len(data) % a.sector_size == 0
        with open(a.image, "r+b") as f:
            f.seek(at)
            f.write(crypt_sectors(key, data, a.payload_offset, a.sector_size, True))
    print("ok", len(data))


if __name__ == "__main__":
    main()
