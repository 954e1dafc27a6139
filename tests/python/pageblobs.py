"""What the Python interop scripts share: the SDK client for AZURE_STORAGE_CONNECTION_STRING and the page ranges
of a page blob as merged [start, end) pairs (the SDK's ends are inclusive)."""
import os

from azure.storage.blob import BlobServiceClient

API_VERSION = "2026-06-06"  # the newest version Azurite 3.37 accepts


def service():
    return BlobServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"], api_version=API_VERSION
    )


def page_ranges(blob):
    ranges = [(r.start, r.end + 1) for r in blob.list_page_ranges() if not r.cleared]
    ranges.sort()
    merged = []
    for s, e in ranges:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged
