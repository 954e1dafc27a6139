#!/usr/bin/env python3
"""Page-blob interop between seedship's Azure client and the official Python SDK (azure-storage-blob).

Usage (the connection string comes from AZURE_STORAGE_CONNECTION_STRING):
  blob_interop.py describe CONTAINER BLOB   print length, page ranges, SHA-256 and metadata of a blob as JSON
  blob_interop.py write CONTAINER BLOB      create a sparse page blob with known pages and print the same JSON
  blob_interop.py sas CONTAINER PERMS       print a container SAS token (PERMS like "racwdl"), valid one hour

Ranges are [start, end) with end exclusive. Used by shared/tests/it/blob.rs.
"""
import datetime
import hashlib
import json
import sys

from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from pageblobs import API_VERSION, page_ranges, service



def describe(container, name):
    blob = service().get_blob_client(container, name)
    props = blob.get_blob_properties()
    data = blob.download_blob().readall()
    return {
        "len": props.size,
        "blob_type": getattr(props.blob_type, "value", str(props.blob_type)),
        "ranges": page_ranges(blob),
        "sha256": hashlib.sha256(data).hexdigest(),
        "metadata": dict(props.metadata),
    }


def pattern(seed, n):
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:n])


def write(container, name):
    blob = service().get_blob_client(container, name)
    size = 3 * 1024 * 1024
    blob.create_page_blob(size, metadata={"writer": "python", "logicallen": "3000000"})
    # First page, a 1 MiB run in the middle, the last page: holes between them.
    for offset, length, seed in [(0, 512, 1), (1024 * 1024, 1024 * 1024, 2), (size - 512, 512, 3)]:
        blob.upload_page(pattern(seed, length), offset=offset, length=length)
    return describe(container, name)


def sas(container, perms):
    svc = service()
    return generate_container_sas(
        account_name=svc.account_name,
        container_name=container,
        account_key=svc.credential.account_key,
        permission=ContainerSasPermissions.from_string(perms),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
        version=API_VERSION,
    )


def main(argv):
    if len(argv) == 4 and argv[1] == "describe":
        print(json.dumps(describe(argv[2], argv[3])))
    elif len(argv) == 4 and argv[1] == "write":
        print(json.dumps(write(argv[2], argv[3])))
    elif len(argv) == 4 and argv[1] == "sas":
        print(sas(argv[2], argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
