"""The load benchmark's parts: ab's own output read right, the mesh's far side found."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cloudrone.bench import load as bench
from cloudrone.mission.model import load
from tests.conftest import ROOT


def test_the_far_phone_is_two_radio_hops_from_the_page_in_the_demo():
    demo = load(ROOT / "missions" / "demo")
    assert bench._farthest(demo, "drone-3") == ("drone-1", 2)
    assert bench._farthest(demo, "drone-2") == ("drone-1", 1)


def test_quantiles_of_response_times():
    times = list(range(1, 101))
    assert bench._quantile(times, 0.5) == 51
    assert bench._quantile(times, 0.99) == 100
    assert bench._quantile(times, 1.0) == 100
    assert bench._quantile([], 0.5) == 0.0


@pytest.fixture
def page(tmp_path):
    """busybox httpd on loopback with a 4 KiB page."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists() or shutil.which("ab") is None:
        pytest.fail("busybox and ab are host packages: run scripts/setup.sh")
    (tmp_path / "index.html").write_text("x" * 4096)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([busybox, "httpd", "-f", "-p", f"127.0.0.1:{port}",
                             "-h", str(tmp_path)])  # fmt: skip
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def test_ab_runs_in_a_network_namespace_and_every_request_is_timed(page):
    # this process's own namespace stands in for a phone's
    before = bench.retransmitted(os.getpid())
    result = bench.ab(os.getpid(), "127.0.0.1", "news.cloudrone.internal", page, 5, 300)
    assert result["complete"] == 300 and result["failed"] == 0
    assert result["bytes_per_response"] == 4096
    assert result["requests_per_s"] > 0
    assert len(result["ms"]) == 300 and result["ms"] == sorted(result["ms"])
    assert bench.retransmitted(os.getpid()) >= before


def test_ab_that_cannot_connect_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(RuntimeError, match=r"no request .* was answered"):
        bench.ab(os.getpid(), "127.0.0.1", "x", closed, 1, 10)


def test_ab_asks_for_a_byte_range_as_the_map_reads_its_tiles(page):
    tile = bench.Ask("/index.html", "1024-2047")
    result = bench.ab(os.getpid(), "127.0.0.1", "map.camp.internal", page, 4, 100, tile)
    # 206 Partial Content, exactly the kilobyte asked for
    assert result["complete"] == 100 and result["failed"] == 0
    assert result["bytes_per_response"] == 1024


def test_answers_that_are_not_2xx_count_as_failed(page):
    with pytest.raises(RuntimeError, match=r"no request .* was answered \(50 failed\)"):
        bench.ab(os.getpid(), "127.0.0.1", "x", page, 2, 50, bench.Ask("/missing.pmtiles"))
