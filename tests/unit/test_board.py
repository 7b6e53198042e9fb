"""The camp board's replicas on loopback: real processes, real HTTP, real pycrdt merges."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pytest

from tests.conftest import ROOT

BOARD = ROOT / "cloudrone" / "camp" / "board.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def replica(port: int, data, peers: list[int], name: str, *extra: str):
    proc = subprocess.Popen(
        [sys.executable, str(BOARD), "--port", str(port), "--data", str(data),
         "--peers", ",".join(f"127.0.0.1:{p}" if isinstance(p, int) else p for p in peers),
         "--interval", "0.2",
         "--replica", name, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, f"replica {name} never listened"
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def post(port: int, **form) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/post",
        data=urllib.parse.urlencode(form).encode(),
        headers={"Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def posts(port: int) -> dict[str, dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/posts.json", timeout=5) as answer:
        return {p["id"]: p for p in json.load(answer)["posts"]}


def wait_for(check, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the replicas did not agree in time"
        time.sleep(0.1)


def test_posts_on_both_sides_of_a_split_all_reach_both_after_it_heals(tmp_path):
    a, b, b_apart = free_port(), free_port(), free_port()
    with replica(a, tmp_path / "a", [b], "a"):
        # the split: b is out of reach; each side takes posts of its own. While
        # split, b answers on a port a does not know: nothing answers where a looks.
        code, on_a = post(a, kind="safe", name="Amina", place="tent C-12")
        assert code == 201 and on_a["via"] == "a"
        with replica(b_apart, tmp_path / "b", [], "b"):
            code, on_b = post(
                b_apart, kind="message", name="Clinic", text="Water at point 4 & 7 <ok>"
            )
            assert code == 201
            assert set(posts(b_apart)) == {on_b["id"]}
        assert set(posts(a)) == {on_a["id"]}
        # the heal: b comes back, now in reach of a and a of it
        with replica(b, tmp_path / "b", [a], "b"):
            both = {on_a["id"], on_b["id"]}
            wait_for(lambda: set(posts(a)) == both and set(posts(b)) == both)
            assert posts(a) == posts(b)
            assert posts(a)[on_b["id"]]["text"] == "Water at point 4 & 7 <ok>"
            # the page shows both, escaped
            with urllib.request.urlopen(f"http://127.0.0.1:{a}/", timeout=5) as answer:
                page = answer.read().decode()
            assert "Amina" in page and "tent C-12" in page
            assert "Water at point 4 &amp; 7 &lt;ok&gt;" in page and "<ok>" not in page


def test_many_posts_at_once_on_three_replicas_none_lost(tmp_path):
    ports = [free_port() for _ in range(3)]
    # every replica is given the same list, as mission up gives it; each leaves itself out
    every = [f"r{i}=127.0.0.1:{p}" for i, p in enumerate(ports)]
    with (
        # one test client posts for the whole crowd: no per-phone limit here
        replica(ports[0], tmp_path / "0", every, "r0", "--posts-per-minute", "6000"),
        replica(ports[1], tmp_path / "1", every, "r1", "--posts-per-minute", "6000"),
        replica(ports[2], tmp_path / "2", every, "r2", "--posts-per-minute", "6000"),
    ):
        ids = set()
        for i in range(30):
            code, p = post(ports[i % 3], kind="safe", name=f"person {i}")
            assert code == 201
            ids.add(p["id"])
        wait_for(lambda: all(set(posts(p)) == ids for p in ports))
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/health", timeout=5) as answer:
            health = json.load(answer)
        assert sorted(health["peers"]) == sorted(f"127.0.0.1:{p}" for p in ports[1:])
        assert all(peer["ok"] for peer in health["peers"].values())


def test_a_restarted_replica_keeps_its_posts(tmp_path):
    port = free_port()
    with replica(port, tmp_path, [], "a"):
        _, first = post(port, kind="safe", name="Jonas")
    with replica(port, tmp_path, [], "a"):
        assert set(posts(port)) == {first["id"]}


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"kind": "safe", "name": ""}, "name is empty"),
        ({"kind": "message", "name": "x", "text": ""}, "text is empty"),
        ({"kind": "rumour", "name": "x"}, "kind must be one of safe, message"),
        ({"kind": "safe", "name": "x" * 61}, "name is longer than 60"),
    ],
)
def test_a_bad_post_is_refused_with_its_field_and_changes_nothing(tmp_path, form, says):
    port = free_port()
    with replica(port, tmp_path, [], "a"):
        code, answer = post(port, **form)
        assert code == 400 and says in answer["error"]
        assert posts(port) == {}
        # a browser's form gets the board back with the reason on it
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/post", data=urllib.parse.urlencode(form).encode()
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 400 and says in refused.value.read().decode()


def test_oversized_bodies_and_garbage_state_vectors_are_refused(tmp_path):
    port = free_port()
    with replica(port, tmp_path, [], "a") as proc:
        big = urllib.request.Request(f"http://127.0.0.1:{port}/post", data=b"x" * 70_000)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(big, timeout=5)
        assert refused.value.code == 413
        garbage = urllib.request.Request(f"http://127.0.0.1:{port}/sync", data=b"\xff\xff\xff")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(garbage, timeout=5)
        assert refused.value.code == 400
        assert proc.poll() is None  # still serving
        assert post(port, kind="safe", name="still here")[0] == 201


def test_a_crowd_of_connections_waits_in_the_backlog_not_in_syn_retries(tmp_path):
    """socketserver listens with a backlog of 5 unless told: a sixth phone's
    SYN would be dropped and sent again 1, 3, 7 seconds later."""
    port = free_port()
    with replica(port, tmp_path, [], "a"):
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
        # State Recv-Q Send-Q Local Peer: a listener's Send-Q is its backlog
        assert int(out[2]) >= 128, out


def post_from(port: int, source: str, **form) -> tuple[int, dict, dict]:
    """A post from a given loopback address: another phone."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        conn.request(
            "POST", "/post", urllib.parse.urlencode(form),
            {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read()), dict(answer.getheaders())
    finally:
        conn.close()


def test_one_phone_posting_fast_is_held_back_and_the_others_still_post(tmp_path):
    port = free_port()
    with replica(port, tmp_path / "d", [], "drone-3", "--post-burst", "4",
                 "--posts-per-minute", "6"):  # fmt: skip
        answers = [post_from(port, "127.0.0.2", kind="message", name="flood", text=str(i))
                   for i in range(7)]  # fmt: skip
        codes = [code for code, _, _ in answers]
        assert codes == [201] * 4 + [429] * 3, codes
        _, refused, headers = answers[-1]
        assert "wait" in refused["error"] and int(headers["Retry-After"]) >= 1
        # every post says which drone's replica took it
        assert all(body["via"] == "drone-3" for code, body, _ in answers if code == 201)
        # another phone is not held back by the first one's flood
        code, other, _ = post_from(port, "127.0.0.3", kind="safe", name="Amina")
        assert code == 201 and other["via"] == "drone-3"
        assert len(posts(port)) == 5
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            assert json.load(answer)["posts_refused_by_limit"] == 3


def test_the_limit_refills_at_its_rate_and_forgets_the_oldest_phones():
    import importlib.util

    spec = importlib.util.spec_from_file_location("board_module", BOARD)
    assert spec is not None and spec.loader is not None
    board = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(board)
    limit = board.PostLimit(per_minute=6, burst=2, max_phones=3)
    assert [limit.allow("a", now=0.0) for _ in range(2)] == [0.0, 0.0]
    assert limit.allow("a", now=0.0) == 10.0  # one post every 10 s after the burst
    assert limit.allow("a", now=9.0) == pytest.approx(1.0)
    assert limit.allow("a", now=10.0) == 0.0
    for phone in ("b", "c", "d"):
        limit.allow(phone, now=11.0)
    assert set(limit.buckets) == {"b", "c", "d"}  # "a", the oldest, forgotten
