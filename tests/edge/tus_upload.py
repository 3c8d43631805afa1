#!/usr/bin/env python3
"""Uploads a file to reel with tuspy (the Python tus client from PyPI), with sha1 checksums.

    tus_upload.py ENDPOINT FILE CHUNK_BYTES TITLE

Prints one JSON object: {"upload": URL, "offset": N, "video": X-Reel-Video of the last answer}.
"""
import json
import os
import sys

from tusclient import client


def main():
    endpoint, path, chunk, title = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    uploader = client.TusClient(endpoint).uploader(
        path,
        chunk_size=chunk,
        metadata={"filename": os.path.basename(path), "title": title},
        upload_checksum=True,
        retries=3,
        retry_delay=1,
    )
    uploader.upload()
    print(json.dumps({
        "upload": uploader.url,
        "offset": uploader.offset,
        "video": uploader.request.response_headers.get("x-reel-video"),
    }))


if __name__ == "__main__":
    main()
