"""The IXI fetcher against a small archive served on loopback: download, resume, checksum,
unpacking, offline and timeout errors."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import write_nifti

from neurodiff.cli import main
from neurodiff.cohort import load_cohort
from neurodiff.cohort.fetch import IXI_BASE_URL, fetch_ixi
from neurodiff.errors import FetchError

NAMES = ["IXI002-Guys-0828-T1.nii.gz", "IXI012-HH-1211-T1.nii.gz"]
TABLE = 'IXI_ID,"SEX_ID (1=m, 2=f)",AGE\n2,2,35.8\n12,1,38.78\n'


def _archive(tmp: Path) -> bytes:
    """An IXI-like tar: two small T1 volumes in a folder, plus a non-image member."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i, name in enumerate(NAMES):
            path = write_nifti(tmp / name, np.random.default_rng(i).uniform(0, 99, (16, 16, 16)))
            tar.add(path, arcname=f"IXI-T1/{name}")
        info = tarfile.TarInfo("IXI-T1/README")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return buf.getvalue()


class _Server:
    """Serves ``files`` on 127.0.0.1; honours ``Range: bytes=N-`` unless ``ranges`` is False."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = 0
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/IXI/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[_Server, bytes]]:
    tar = _archive(tmp_path / "src")
    server = _Server({"IXI-T1.tar": tar, "IXI.csv": TABLE.encode()})
    yield server, tar
    server.close()


def _fetch(server: _Server, out: Path, md5: str, **kw):
    return fetch_ixi(
        out, base_url=server.url, timeout=5, md5=md5, table_name="IXI.csv", progress=False, **kw
    )


def test_download_verify_unpack_and_load(served, tmp_path: Path) -> None:
    server, tar = served
    out = _fetch(server, tmp_path / "ixi", hashlib.md5(tar).hexdigest())
    assert sorted(p.name for p in out.glob("*.nii.gz")) == NAMES
    assert (out / "IXI.csv").read_text() == TABLE
    assert not (out / ".download").exists()  # archive removed after unpacking
    df = load_cohort(out)
    assert df["site"].tolist() == ["Guys", "HH"]
    assert df["age"].tolist() == [35.8, 38.8]
    # a second call finds everything in place and asks the server for nothing
    n = len(server.requests)
    _fetch(server, out, hashlib.md5(tar).hexdigest())
    assert len(server.requests) == n


def test_resume_from_a_partial_download(served, tmp_path: Path) -> None:
    server, tar = served
    out = tmp_path / "ixi"
    part = out / ".download" / "IXI-T1.tar.part"
    part.parent.mkdir(parents=True)
    half = len(tar) // 2
    part.write_bytes(tar[:half])
    _fetch(server, out, hashlib.md5(tar).hexdigest(), keep_archive=True)
    assert ("IXI-T1.tar", f"bytes={half}-") in server.requests
    assert (out / ".download" / "IXI-T1.tar").read_bytes() == tar
    assert sorted(p.name for p in out.glob("*.nii.gz")) == NAMES


def test_server_without_ranges_restarts_the_download(served, tmp_path: Path) -> None:
    server, tar = served
    server.ranges = False
    out = tmp_path / "ixi"
    part = out / ".download" / "IXI-T1.tar.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(tar[:100])
    _fetch(server, out, hashlib.md5(tar).hexdigest())
    assert sorted(p.name for p in out.glob("*.nii.gz")) == NAMES


def test_complete_partial_file_is_accepted(served, tmp_path: Path) -> None:
    server, tar = served
    out = tmp_path / "ixi"
    part = out / ".download" / "IXI-T1.tar.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(tar)  # the server answers 416: nothing left to fetch
    _fetch(server, out, hashlib.md5(tar).hexdigest())
    assert sorted(p.name for p in out.glob("*.nii.gz")) == NAMES


def test_bad_checksum_is_refused_and_removed(served, tmp_path: Path) -> None:
    server, tar = served
    out = tmp_path / "ixi"
    with pytest.raises(
        FetchError,
        match=f"IXI-T1.tar from {server.url}IXI-T1.tar has MD5 "
        f"{hashlib.md5(tar).hexdigest()}, expected 0{{32}}",
    ):
        _fetch(server, out, "0" * 32)
    assert not (out / ".download" / "IXI-T1.tar").exists()
    assert not list(out.glob("*.nii.gz"))


def test_manual_download_needs_no_network(tmp_path: Path) -> None:
    tar = _archive(tmp_path / "src")
    out = tmp_path / "ixi"
    out.mkdir()
    (out / "IXI-T1.tar").write_bytes(tar)
    (out / "IXI.xls").write_bytes(b"placed by hand")
    fetch_ixi(out, base_url="http://127.0.0.1:9/", md5=hashlib.md5(tar).hexdigest(), progress=False)
    assert sorted(p.name for p in out.glob("*.nii.gz")) == NAMES


def test_missing_file_on_the_server(served, tmp_path: Path) -> None:
    server, _ = served
    with pytest.raises(FetchError, match=r"downloading .*/IXI/IXI.xls failed: HTTP 404"):
        fetch_ixi(tmp_path / "ixi", base_url=server.url, timeout=5, progress=False)


def test_offline_fails_fast_with_advice(tmp_path: Path) -> None:
    # the autouse guard in conftest refuses the name look-up, as an offline machine would
    with pytest.raises(
        FetchError,
        match=f"cannot download {IXI_BASE_URL}IXI.xls: .*download "
        f"{IXI_BASE_URL}IXI-T1.tar and .* by hand into",
    ):
        fetch_ixi(tmp_path / "ixi", timeout=2, progress=False)


def test_timeout_is_reported(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts connections into the backlog, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(FetchError, match="cannot download .*timed out"):
            fetch_ixi(tmp_path / "ixi", base_url=url, timeout=0.5, progress=False)
    finally:
        silent.close()


def test_cli_offline_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["fetch-ixi", "--out", str(tmp_path / "ixi"), "--timeout", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert "neurodiff fetch-ixi: error: cannot download" in err and "Traceback" not in err
