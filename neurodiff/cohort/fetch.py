"""Downloading the IXI T1 scans and demographics (``neurodiff fetch-ixi``).

IXI (https://brain-development.org/ixi-dataset/) holds ~600 MR scans of healthy adults from
three London hospitals (Guy's, Hammersmith and the Institute of Psychiatry), released under the
Creative Commons CC BY-SA 3.0 licence. This module downloads ``IXI-T1.tar`` (4.5 GB, 581 T1
volumes named like ``IXI002-Guys-0828-T1.nii.gz``) and the demographics table ``IXI.xls``,
checks the archive's MD5, and unpacks the scans next to the table, which is exactly the IXI-style
layout :func:`neurodiff.cohort.load_cohort` reads.

The download resumes: bytes go to ``<out>/.download/IXI-T1.tar.part`` and an interrupted run
continues from there with an HTTP ``Range`` request. A manually downloaded ``IXI-T1.tar`` (and
``IXI.xls``) placed in ``<out>`` is used as it is.

It uses :mod:`urllib.request` from the standard library: one large file over plain HTTP with a
``Range`` header, a checksum and a progress bar is all that is needed, and nilearn's own fetcher
helpers are private API, so no extra dependency (requests, pooch) is worth adding.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from ..config.fields import IXI_DIR
from ..errors import FetchError
from ..io import atomic_path

__all__ = ["IXI_BASE_URL", "IXI_T1_ARCHIVE", "IXI_T1_MD5", "IXI_TABLE", "fetch_ixi"]

log = logging.getLogger(__name__)

#: Where the IXI files are published.
IXI_BASE_URL = "http://biomedic.doc.ic.ac.uk/brain-development/downloads/IXI/"
IXI_T1_ARCHIVE = "IXI-T1.tar"
IXI_T1_MD5 = "34901a0593b41dd19c1a1f746eac2d58"
IXI_TABLE = "IXI.xls"
_COMPLETE = ".ixi-t1-complete"
_CHUNK = 1 << 20


def _url(base_url: str, name: str) -> str:
    return base_url.rstrip("/") + "/" + name


def _manual_hint(base_url: str, out: Path) -> str:
    return (
        f"Check the connection, or download {_url(base_url, IXI_T1_ARCHIVE)} and "
        f"{_url(base_url, IXI_TABLE)} by hand into {out}/ and run the command again "
        "(the archive is then checked and unpacked without a download)."
    )


def _open(url: str, timeout: float, start: int = 0):
    """urlopen with an optional Range header; network failures become FetchError."""
    headers = {"User-Agent": "neurodiff-fetch"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)


def _download(
    url: str, dest: Path, *, timeout: float, base_url: str, out: Path, progress: bool
) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial ``.part`` file."""
    from tqdm.auto import tqdm

    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.is_file() else 0
    try:
        try:
            response = _open(url, timeout, start)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # the partial file is already complete
                os.replace(part, dest)
                return dest
            raise
        with response:
            status = getattr(response, "status", 200)
            if start and status != 206:  # server ignored the Range header: start again
                log.info("server does not resume downloads; restarting %s", url)
                start = 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
            mode = "ab" if start else "wb"
            with (
                open(part, mode) as fh,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                while block := response.read(_CHUNK):
                    fh.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        raise FetchError(
            f"downloading {url} failed: HTTP {exc.code} {exc.reason}. "
            + _manual_hint(base_url, out),
            path=dest,
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"cannot download {url}: {reason}. " + _manual_hint(base_url, out), path=dest
        ) from None
    if total is not None and part.stat().st_size != total:
        raise FetchError(
            f"download of {url} stopped early: {part.stat().st_size} of {total} "
            "bytes; run the command again to resume",
            path=part,
        )
    os.replace(part, dest)
    return dest


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _extract(archive: Path, out: Path) -> list[Path]:
    """Unpack the NIfTI members of ``archive`` flat into ``out`` (each file written atomically)."""
    written = []
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                name = Path(member.name).name
                if not member.isfile() or not name.endswith((".nii", ".nii.gz")):
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                # only the base name is used, so no member can write outside ``out``
                with src, atomic_path(out / name) as tmp, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
                written.append(out / name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise FetchError(f"cannot unpack {archive}: {exc}", path=archive) from None
    return written


def fetch_ixi(
    out: str | Path = IXI_DIR,
    base_url: str = IXI_BASE_URL,
    timeout: float = 20.0,
    *,
    md5: str | None = IXI_T1_MD5,
    archive_name: str = IXI_T1_ARCHIVE,
    table_name: str = IXI_TABLE,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Download, verify and unpack the IXI T1 scans and demographics into ``out``.

    Parameters
    ----------
    out : str or Path
        Target folder; afterwards it holds ``IXI*-T1.nii.gz`` and ``IXI.xls``.
    base_url : str
        Folder URL holding ``archive_name`` and ``table_name``.
    timeout : float
        Seconds to wait for the server on connect and between received blocks.
    md5 : str or None
        Expected MD5 of the archive (``None`` skips the check).
    archive_name, table_name : str
        File names under ``base_url``.
    keep_archive : bool
        Keep the tar file after unpacking (default: delete it, 4.5 GB).
    progress : bool
        Show progress bars.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    FetchError
        Offline, timed out, HTTP error, wrong checksum or an archive that cannot be unpacked;
        the message names the URL or file and says how to download by hand.
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise FetchError(f"--out {out} is a file; expected a folder", path=out)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / _COMPLETE
    table = out / table_name
    if not table.is_file():
        _download(
            _url(base_url, table_name),
            table,
            timeout=timeout,
            base_url=base_url,
            out=out,
            progress=progress,
        )
    if marker.is_file() and marker.read_text().strip() == (md5 or "unchecked"):
        log.info("IXI T1 scans already in %s", out)
        return out

    manual = out / archive_name
    archive = manual if manual.is_file() else out / ".download" / archive_name
    if not archive.is_file():
        _download(
            _url(base_url, archive_name),
            archive,
            timeout=timeout,
            base_url=base_url,
            out=out,
            progress=progress,
        )
    if md5 is not None:
        log.info("checking the MD5 of %s", archive)
        found = _md5(archive)
        if found != md5.lower():
            archive.unlink()
            raise FetchError(
                f"{archive_name} from {_url(base_url, archive_name)} has MD5 "
                f"{found}, expected {md5}; the corrupt file was removed, run the "
                "command again to download it afresh",
                path=archive,
            )
    scans = _extract(archive, out)
    if not scans:
        raise FetchError(f"{archive} holds no .nii/.nii.gz files", path=archive)
    marker.write_text((md5 or "unchecked") + "\n")
    if not keep_archive:
        archive.unlink()
        shutil.rmtree(out / ".download", ignore_errors=True)
    log.info("unpacked %d IXI T1 scans into %s", len(scans), out)
    return out
