"""A real PACS for the tests: Orthanc (Debian package ``orthanc``) on 127.0.0.1, with its
storage in a temporary folder, free ports, and the test's AE title as a known modality.

``orthanc`` is a pytest fixture: import it into a test module to use it. It skips, with the
reason, only where the ``Orthanc`` binary is not installed (``make setup`` installs it).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

TEST_AET = "PETITE_TEST"
PACS_AET = "ORTHANC_TEST"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary() -> str | None:
    return shutil.which("Orthanc") or next(
        (str(p) for p in (Path("/usr/sbin/Orthanc"), Path("/usr/bin/Orthanc")) if p.exists()),
        None)


@dataclass
class Orthanc:
    dicom_port: int
    http_port: int
    storage: Path

    def rest(self, path: str):
        """GET a REST resource of the server (what it stores), as JSON."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                    timeout=10) as answer:
            return json.loads(answer.read())

    def settings(self, **kw):
        from napari_petite.io.pacs import PacsSettings

        values = {"host": "127.0.0.1", "port": self.dicom_port, "called_aet": PACS_AET,
                  "calling_aet": TEST_AET, "timeout_s": 10.0, **kw}
        return PacsSettings(**values)


@pytest.fixture
def orthanc(tmp_path):
    binary = _binary()
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc; `make setup`)")
    folder = tmp_path / "orthanc"
    folder.mkdir()
    server = Orthanc(_free_port(), _free_port(), folder / "storage")
    config = {
        "Name": "petite-test", "StorageDirectory": str(server.storage),
        "IndexDirectory": str(server.storage), "DicomAet": PACS_AET,
        "DicomPort": server.dicom_port, "HttpPort": server.http_port,
        "RemoteAccessAllowed": True, "AuthenticationEnabled": False,
        "DicomModalities": {"petite": [TEST_AET, "127.0.0.1", _free_port()]},
        "DicomCheckCalledAet": True, "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False, "HttpServerEnabled": True, "Plugins": [],
    }
    (folder / "config.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([binary, str(folder / "config.json")], stdout=log,
                            stderr=subprocess.STDOUT, cwd=folder)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.rest("/system")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Orthanc did not start: "
                                f"{(folder / 'orthanc.log').read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
