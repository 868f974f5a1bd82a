"""A small resumable HTTP(S) downloader for datasets and weights (standard library only).

`download(url, dest)` writes to `dest.part`, resumes an existing `.part` with an HTTP Range request (and
starts over when the server ignores Range), checks the sha256 before the atomic rename to `dest`, and
deletes a `.part` whose hash is wrong. Any failure to get the bytes (DNS, refused connection, timeout,
HTTP error, dropped connection) raises `DownloadUnavailable`, whose message ends with the caller's
instructions for downloading the file by hand.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from bench.errors import BenchError
from bench.hashing import sha256_file

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "i2i-bench-downloader/1"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadUnavailable(BenchError):
    """The file could not be fetched; the message says what to download by hand and where to put it."""


class ChecksumMismatch(BenchError):
    """The downloaded bytes are not the expected file; the partial file has been deleted."""


def check_sha256(path: Path, sha256: str | None = None, sha256_prefix: str | None = None) -> str:
    """The file's sha256; raises ChecksumMismatch when it differs from `sha256` or lacks `sha256_prefix`."""
    actual = sha256_file(path)
    if sha256 is not None and actual != sha256.lower():
        raise ChecksumMismatch(f"{path}: sha256 {actual} differs from the expected {sha256.lower()}")
    if sha256_prefix is not None and not actual.startswith(sha256_prefix.lower()):
        raise ChecksumMismatch(f"{path}: sha256 {actual} does not start with the expected {sha256_prefix.lower()}")
    return actual


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    progress: bool = True,
    manual_help: str = "",
    timeout: float = 60.0,
) -> Path:
    """Fetch `url` to `dest` (resuming `dest.part`), verify it, rename it into place and return `dest`.

    An existing `dest` with the right hash is returned as is. `manual_help` is appended to the
    DownloadUnavailable message: what to download by hand and where to put it.
    """
    dest = Path(dest)
    if dest.exists():
        check_sha256(dest, sha256, sha256_prefix)
        return dest
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch_part(url, part, progress, timeout)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError) as error:
        # URLError covers DNS failures and refused connections (HTTPError too); the others happen mid-transfer.
        # Other OSErrors (disk full, permissions) are not network trouble and propagate as they are.
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", None) or error
        kept = f" The partial file {part} is kept; rerunning resumes it." if part.exists() else ""
        raise DownloadUnavailable(f"could not download {url}: {reason}.{kept}\n{manual_help}".rstrip()) from error
    try:
        check_sha256(part, sha256, sha256_prefix)
    except ChecksumMismatch as error:
        part.unlink()  # resuming a wrong file would only make it longer
        raise ChecksumMismatch(f"{error}; deleted it. Download {url} again.\n{manual_help}".rstrip()) from None
    os.replace(part, dest)
    return dest


def _fetch_part(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Append the rest of `url` to `part`, or rewrite it when the server does not honour the Range request."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Range not satisfiable: the .part already holds the whole file (the hash check decides).
            error.close()
            return
        raise
    with response:
        resumed = offset > 0 and response.status == 206 and _range_start(response) == offset
        if offset and not resumed:
            if response.status == 206:  # a range we did not ask for: its bytes are not the rest of our file
                response.close()
                part.unlink()
                return _fetch_part(url, part, progress, timeout)
            log.info("server ignored the Range request; downloading %s from the start", url)
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        bar = _progress_bar(total, start, url) if progress else None
        written = start
        part.parent.mkdir(parents=True, exist_ok=True)  # only now: a failed connection leaves no empty folder
        with open(part, "ab" if resumed else "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                written += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
    if total is not None and written < total:
        raise http.client.IncompleteRead(b"", total - written)  # the connection closed early; .part resumes


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """The first byte position of a 206 response's Content-Range, or None."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _progress_bar(total: int | None, start: int, url: str):
    """A tqdm bar on stderr (silent when stderr is not a terminal), or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    name = url.rsplit("/", 1)[-1].split("?")[0] or url
    return tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=name, file=sys.stderr, disable=None)
