"""A phone on drone A's access point: a lease, names, a page two radio hops
away on drone C, and not one management or flight port anywhere.

The phone is a plain container on A's access point link running busybox's
DHCP client, after dropping the address Docker gave it. Every check goes
through the real parts: A's dnsmasq, the drones' firewalls, OLSR routes.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shlex
import socket
import time

import pytest

from cloudrone.bench.lab import wait_until
from cloudrone.fleet import sim
from cloudrone.olsr import codec
from cloudrone.olsr.constants import HELLO_MESSAGE, LQ_HELLO_MESSAGE, OLSR_PORT, WILL_DEFAULT

MESH = {"drone-a": "10.246.1.11", "drone-b": "10.246.1.12", "drone-c": "10.246.1.13"}
MANAGEMENT = {"drone-a": "10.246.0.11", "drone-b": "10.246.0.12", "drone-c": "10.246.0.13"}
ACCESS_POINT = {"drone-a": "10.246.11.1", "drone-b": "10.246.12.1", "drone-c": "10.246.13.1"}
SERVICE = ("camp.cloudrone.internal", MESH["drone-c"], 8080)  # molecule.yml's cloudrone_services
LEASES = "/var/lib/misc/dnsmasq.leases"
# every check here is made from the phone and the fleet; none needs a drone host
testinfra_hosts = ["ansible://drone-a"]

# Connect to each port and tell apart: open (it answers), closed (the kernel
# refuses: nothing listens, but a packet got there) and filtered (dropped on the
# way: no answer at all). Only "filtered" proves a firewall.
PROBE = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
target, tcp_ports, udp_ports = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def knock(kind_port):
    kind, p = kind_port
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.connect((target, p))
        if kind == "udp":
            s.send(b"probe"); s.recv(64)
        return "open"
    except ConnectionRefusedError:
        return "closed"
    except OSError:
        return "filtered"
    finally:
        s.close()
asked = [("tcp", p) for p in tcp_ports] + [("udp", p) for p in udp_ports]
with ThreadPoolExecutor(len(asked)) as pool:
    found = list(pool.map(knock, asked))
out = {"tcp": {}, "udp": {}}
for (kind, p), state in zip(asked, found):
    out[kind][p] = state
print(json.dumps(out))
"""
MANAGEMENT_TCP = [22, 2375, 2376, 2377, 7946]
MANAGEMENT_UDP = [4789, 7946, 14555]  # VXLAN, Swarm gossip, the flight bridge's MAVLink


@pytest.fixture(scope="module")
def page_on_c(on_drone):
    """A tiny web server on drone C, holding a page no one could guess."""
    token = secrets.token_hex(8)
    code, out = on_drone(
        "drone-c",
        f"mkdir -p /srv/camp && echo {token} > /srv/camp/index.html && "
        "systemd-run --unit=camp-page python3 -m http.server 8080 --directory /srv/camp",
    )
    assert code == 0, out
    assert wait_until(lambda: on_drone("drone-c", "ss -Hltn 'sport = 8080'")[1].strip(), 10)
    # A's names daemon has seen it answer: phones on A are given its name from now on
    assert wait_until(
        lambda: MESH["drone-c"] in on_drone("drone-a", "cat /run/cloudrone-names/services")[1], 15
    )
    yield token
    on_drone("drone-c", "systemctl stop camp-page")


@pytest.fixture(scope="module")
def phone(fleet):
    image = fleet.client.containers.get(fleet.spec.container_name("drone-a")).image.id
    phone = sim.add_phone(fleet.spec, "ground-a", "phone-a", image)
    yield phone
    phone.remove()


@pytest.fixture(scope="module")
def lease(phone) -> str:
    return phone.join()


def probe(phone, target: str, tcp: list[int], udp: list[int]) -> dict:
    status, out = phone.sh(
        "python3 -c " + shlex.quote(PROBE) + f" {target} '{json.dumps(tcp)}' '{json.dumps(udp)}'",
        timeout=120,
    )
    assert status == 0, out
    scan = json.loads(out)
    return {k: {int(p): s for p, s in v.items()} for k, v in scan.items()}


def test_the_phone_gets_a_lease_from_a(phone, lease, on_drone):
    address = ipaddress.IPv4Address(lease)
    # the upper half of A's subnet, as the role hands out
    assert address in ipaddress.IPv4Network("10.246.11.128/25"), lease
    _, routes = phone.sh("ip route show default")
    assert f"via {ACCESS_POINT['drone-a']}" in routes
    _, resolv = phone.sh("cat /etc/resolv.conf")
    assert f"nameserver {ACCESS_POINT['drone-a']}" in resolv
    assert "search cloudrone.internal" in resolv
    # and A's dnsmasq wrote it down
    _, leases = on_drone("drone-a", f"cat {LEASES}")
    assert f" {lease} " in leases


def test_the_lease_outlives_a_restart_of_dnsmasq(phone, lease, on_drone):
    code, out = on_drone("drone-a", "systemctl restart dnsmasq")
    assert code == 0, out
    _, leases = on_drone("drone-a", f"cat {LEASES}")
    assert f" {lease} " in leases
    # the phone asks again and keeps its address
    assert phone.join() == lease


def test_the_phone_finds_the_service_by_name_and_fetches_its_page_on_c(phone, lease, page_on_c):
    name, address, port = SERVICE
    _, out = phone.sh(f"busybox nslookup {name} {ACCESS_POINT['drone-a']}")
    assert address in out, out
    # through the C library, with the resolver the lease named, as an app would
    code, page = phone.sh(
        'python3 -c "import socket, urllib.request; '
        f"print(socket.gethostbyname('{name}')); "
        f"print(urllib.request.urlopen('http://{name}:{port}/', timeout=10).read().decode())\""
    )
    assert code == 0, page
    assert page.split() == [address, page_on_c]
    # and the short name too (the lease's search domain)
    code, out = phone.sh("python3 -c \"import socket; print(socket.gethostbyname('camp'))\"")
    assert out.strip() == address, out


def test_c_is_two_radio_hops_from_the_phones_drone(on_drone):
    _, route = on_drone("drone-a", f"ip route get {MESH['drone-c']}")
    assert f"via {MESH['drone-b']}" in route, route


def test_drones_have_names_and_the_domain_is_answered_locally(phone, lease):
    _, out = phone.sh(f"busybox nslookup drone-c.cloudrone.internal {ACCESS_POINT['drone-a']}")
    assert MESH["drone-c"] in out, out
    # a name in the domain that does not exist is answered here, not forwarded
    started = time.monotonic()
    code, out = phone.sh(f"busybox nslookup nobody.cloudrone.internal {ACCESS_POINT['drone-a']}")
    assert code != 0 and "NXDOMAIN" in out.upper().replace(" ", ""), out
    assert time.monotonic() - started < 5


LANDING = "http://welcome.cloudrone.internal/"
CHECK_HOSTS = ["connectivitycheck.gstatic.com", "captive.apple.com", "www.msftconnecttest.com",
               "detectportal.firefox.com"]  # fmt: skip


def test_the_lease_names_the_landing_page_by_option_114(phone, lease):
    # RFC 8910: the URI of the captive-portal API, for phones that ask for it
    assert phone.captive_portal() == LANDING + "captive-portal/api"


@pytest.mark.parametrize("host", [*CHECK_HOSTS, "welcome.cloudrone.internal"])
def test_the_phones_internet_checks_reach_the_phones_own_drone(phone, lease, host):
    # Android, iOS, Windows, Firefox: with no uplink in the fleet, their checks come
    # to drone A's landing page, which tells them what this network is
    code, out = phone.sh(f"python3 -c \"import socket; print(socket.gethostbyname('{host}'))\"")
    assert code == 0 and out.strip() == ACCESS_POINT["drone-a"], out


def test_a_check_opens_the_landing_page_until_the_phone_chose_the_network(phone, lease):
    check = "http://connectivitycheck.gstatic.com/generate_204"
    # the phone has not chosen yet
    status, location, _ = phone.http(check)
    assert (status, location) == (302, LANDING)
    status, _, page = phone.http(LANDING)
    assert status == 200 and "Welcome to cloudrone" in page  # the access point's SSID
    assert "http://camp.cloudrone.internal:8080/" in page
    assert "drone-c" in page
    status, location, _ = phone.http(LANDING + "accept", "POST")
    assert (status, location) == (303, LANDING)
    # now the phone finds "the Internet" and keeps the WiFi
    assert phone.http(check)[0] == 204
    status, _, body = phone.http("http://captive.apple.com/hotspot-detect.html")
    assert status == 200 and "<TITLE>Success</TITLE>" in body


def test_other_outside_names_are_still_not_answered(phone, lease):
    code, out = phone.sh("python3 -c \"import socket; socket.gethostbyname('example.org')\"")
    assert code != 0 and "gaierror" in out, out


def dns_query(server: str, name: str) -> str:
    """A one-question DNS query to ``server`` over UDP, in Python: prints the answer in hex."""
    question = "".join(f"{len(p):02x}{p.encode().hex()}" for p in name.split(".")) + "00"
    return "python3 -c " + shlex.quote(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); "
        f"s.sendto(bytes.fromhex('abcd01000001000000000000{question}00010001'), ('{server}', 53)); "
        "print(s.recv(512).hex())"
    )


def test_the_management_network_is_never_captured(phone, lease, on_drone):
    host = "connectivitycheck.gstatic.com"
    # the operator's side: drone-a's resolver does not answer on its management address
    code, out = on_drone("drone-b", dns_query(MANAGEMENT["drone-a"], host))
    assert code != 0 and ("timed out" in out or "refused" in out), out
    # the same question on the access point is answered with the page's address
    code, out = phone.sh(dns_query(ACCESS_POINT["drone-a"], host))
    assert code == 0 and out.strip().endswith(socket.inet_aton(ACCESS_POINT["drone-a"]).hex()), out


@pytest.mark.parametrize(
    "target",
    [
        ("drone-a", ACCESS_POINT["drone-a"]),
        ("drone-a", MESH["drone-a"]),
        ("drone-a", MANAGEMENT["drone-a"]),
        ("drone-b", MESH["drone-b"]),
        ("drone-c", MESH["drone-c"]),
        ("drone-c", ACCESS_POINT["drone-c"]),
    ],
    ids=lambda t: f"{t[0]}@{t[1]}",
)
def test_no_management_or_flight_port_answers_the_phone(phone, lease, page_on_c, target):
    _, address = target
    scan = probe(phone, address, [*MANAGEMENT_TCP, 8080], MANAGEMENT_UDP)
    assert {p: scan["tcp"][p] for p in MANAGEMENT_TCP} == dict.fromkeys(MANAGEMENT_TCP, "filtered")
    assert scan["udp"] == dict.fromkeys(MANAGEMENT_UDP, "filtered")
    # the service port is the phone's to use: open on C, where the page is
    if address in (MESH["drone-c"], ACCESS_POINT["drone-c"]):
        assert scan["tcp"][8080] == "open"


def test_the_same_ports_do_answer_inside_the_mesh(on_drone):
    """The control for the scan above: from drone B, C's SSH is open and its
    cluster ports are reached (closed: nothing listens yet), so 'filtered'
    from the phone is the firewall's doing, not an empty drone."""
    code, out = on_drone(
        "drone-b", f"python3 -c {shlex.quote(PROBE)} {MESH['drone-c']} '[22, 2377, 7946]' '[]'"
    )
    assert code == 0, out
    assert json.loads(out)["tcp"] == {"22": "open", "2377": "closed", "7946": "closed"}


def _hello_from(originator: str, etx: bool) -> bytes:
    """A HELLO in the drones' dialect: LQ_HELLO with link quality, plain without."""
    hello = codec.Message(
        type=LQ_HELLO_MESSAGE if etx else HELLO_MESSAGE,
        vtime=codec.encode_time(3.0),
        originator=originator,
        ttl=1,
        hop_count=0,
        seqno=1,
        body=codec.Hello(htime=codec.encode_time(1.0), willingness=WILL_DEFAULT),
    )
    return codec.encode_packet(1, [codec.encode_message(hello)])


def _links_of_c(on_drone) -> set[str]:
    _, out = on_drone("drone-c", "curl -sf http://127.0.0.1:9090/links")
    return {link["remoteIP"] for link in json.loads(out)["links"]}


def test_the_phone_cannot_speak_olsr_to_any_drone(phone, lease, fleet, on_drone):
    """A HELLO from the phone to C's routing daemon never arrives; the same
    HELLO from a host on the mesh does (C lists the link): the probe is sound."""
    _, out = on_drone("drone-c", "curl -sf http://127.0.0.1:9090/mpr")
    etx = json.loads(out)["linkQuality"] == "etx"
    packet = _hello_from(lease, etx).hex()
    send = (
        'python3 -c "import socket, sys; s = socket.socket(2, 2); '
        f"s.bind(('', {OLSR_PORT})); "
        f"[s.sendto(bytes.fromhex('{packet}'), (a, {OLSR_PORT})) for a in sys.argv[1:]]\" "
        + " ".join(MESH.values())
    )
    for _ in range(3):
        code, out = phone.sh(send)
        assert code == 0, out
        time.sleep(0.3)  # paces the three HELLOs
    assert not wait_until(lambda: lease in _links_of_c(on_drone), 3), "C heard the phone"
    # control: from the controller's own address on the mesh link
    controller = str(next(lk.gateway for lk in fleet.spec.links if lk.name == "mesh"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((controller, OLSR_PORT))
    try:
        packet = _hello_from(controller, etx)

        def heard() -> bool:
            sock.sendto(packet, (MESH["drone-c"], OLSR_PORT))
            return controller in _links_of_c(on_drone)

        assert wait_until(heard, 5), "C never heard the control HELLO: the probe proves nothing"
    finally:
        sock.close()


# A laptop's mDNS question (RFC 6762 legacy unicast: asked from an ordinary port,
# answered to it): which _http._tcp services are there?
MDNS_BROWSE = r"""
import socket, struct
name = b"".join(bytes([len(p)]) + p for p in b"_http._tcp.local".split(b".")) + b"\0"
query = struct.pack("!6H", 0x1234, 0, 1, 0, 0, 0) + name + struct.pack("!2H", 12, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(query, ("224.0.0.251", 5353))
data, peer = s.recvfrom(4096)
print(peer[0], data.hex())
"""


def test_a_laptop_finds_the_service_by_mdns_on_the_access_point(phone, lease):
    code, out = phone.sh("python3 -c " + shlex.quote(MDNS_BROWSE))
    assert code == 0, out
    peer, answer = out.split()
    data = bytes.fromhex(answer)
    assert peer == ACCESS_POINT["drone-a"]
    # the instance, its port (SRV) and its address (A): C's page
    assert b"\x04camp" in data
    assert (8080).to_bytes(2, "big") in data
    assert socket.inet_aton(MESH["drone-c"]) in data


def resolve(phone, name: str) -> set[str]:
    """The addresses the phone's resolver (its C library, its drone's DNS) gives ``name``."""
    _, out = phone.sh(f"getent ahostsv4 {name}")
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_the_services_name_follows_the_copies_that_answer(phone, lease, page_on_c, on_drone):
    """camp may run on B or C (molecule.yml): the phone is given only the copies
    that answer, within seconds of one starting or stopping, and A's names
    daemon ranks them by the mesh's cost (B one hop, C two)."""
    name, c_address, _ = SERVICE
    b_address = MESH["drone-b"]
    assert resolve(phone, name) == {c_address}  # nothing listens on B yet
    code, out = on_drone(
        "drone-b",
        "mkdir -p /srv/camp && echo b > /srv/camp/index.html && "
        "systemd-run --unit=camp-page-b python3 -m http.server 8080 --directory /srv/camp",
    )
    assert code == 0, out
    try:
        assert wait_until(lambda: resolve(phone, name) == {b_address, c_address}, 15)
        _, hosts = on_drone("drone-a", "cat /run/cloudrone-names/services")
        ranked = [line.split()[0] for line in hosts.splitlines() if not line.startswith("#")]
        assert ranked == [b_address, c_address], hosts  # nearest first
        # C's copy stops: C is no longer given
        on_drone("drone-c", "systemctl stop camp-page")
        stopped = time.monotonic()
        assert wait_until(lambda: resolve(phone, name) == {b_address}, 15)
        print(f"C dropped from the phone's answers {time.monotonic() - stopped:.1f} s after")
        status, _, page = phone.http(f"http://{name}:8080/")
        assert status == 200 and page.strip() == "b", page
    finally:
        on_drone("drone-b", "systemctl stop camp-page-b")
        on_drone(
            "drone-c",
            "systemctl is-active -q camp-page || "
            "systemd-run --unit=camp-page python3 -m http.server 8080 --directory /srv/camp",
        )
