#!/usr/bin/env bash
# Cloudrone controller setup: everything the demo and the tests need, installed
# once and reused afterwards. Safe to run again; every step says what it does.
#
#   scripts/setup.sh            # engine, package cache, virtualenv, drone image
#   CLOUDRONE_SETUP_SKIP_IMAGE=1 scripts/setup.sh   # everything but the image
#   CLOUDRONE_SETUP_ONLY_VENV=1 scripts/setup.sh    # the virtualenv alone (lint:
#                                                   # no engine, no root needed)
#
# Works as root on Debian or Ubuntu, with or without systemd as PID 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CLOUDRONE_VENV:-$ROOT/.venv}
LOCK=$ROOT/requirements/controller.lock
ACNG_PORT=3142
DOCKERD_LOG=/var/log/cloudrone-dockerd.log

if [ -t 1 ]; then B='\033[1;34m' R='\033[1;31m' N='\033[0m'; else B='' R='' N=''; fi
say() { printf "${B}==>${N} %s\n" "$*"; }
ok() { printf '    %s\n' "$*"; }
die() {
  printf "${R}xx${N} %s\n" "$1" >&2
  [ -n "${2:-}" ] && printf '   fix: %s\n' "$2" >&2
  exit 1
}

pid1_is_systemd() { [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null ||
    die "apt-get not found: this setup supports Debian and Ubuntu controllers" \
      "install $* with your distribution's package manager, then run setup again"
  if [ $APT_UPDATED = 0 ]; then
    ok "apt-get update"
    as_root apt-get update -q >/dev/null || die "apt-get update failed" \
      "check the machine's apt sources and network, then run setup again"
    APT_UPDATED=1
  fi
  ok "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
    >/dev/null || die "apt-get install $* failed" "run: apt-get install $*  (and read its error)"
}

ONLY_VENV=${CLOUDRONE_SETUP_ONLY_VENV:-0}

# --- 1. Host packages ------------------------------------------------------
if [ "$ONLY_VENV" != 1 ]; then
say "Host packages (debootstrap, apt-cacher-ng, ssh client, iproute2, nftables, tshark, busybox, ab)"
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v apt-cacher-ng >/dev/null || [ -x /usr/sbin/apt-cacher-ng ] || need+=(apt-cacher-ng)
command -v ssh >/dev/null || need+=(openssh-client)
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v nft >/dev/null || need+=(nftables)  # radio range of the simulated fleet
command -v tshark >/dev/null || need+=(tshark)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v ab >/dev/null || need+=(apache2-utils)  # the paper's load test (cloudrone.bench.load)
command -v chromium >/dev/null || need+=(chromium)  # a real browser: the landing page as a phone opens it
command -v npm >/dev/null || need+=(nodejs npm)  # the offline map page's libraries (npm registry)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)  # names that follow services (tests)
command -v python3 >/dev/null || need+=(python3 python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  # tshark asks whether non-root users may capture; the default (no) is right.
  echo "wireshark-common wireshark-common/install-setuid boolean false" |
    as_root debconf-set-selections 2>/dev/null || true
  apt_install "${need[@]}"
else
  ok "all present"
fi

# --- 2. Docker engine ------------------------------------------------------
say "Docker engine"
if docker info >/dev/null 2>&1; then
  ok "an engine answers: $(docker version --format '{{.Server.Version}}' 2>/dev/null) (reused)"
else
  if ! command -v dockerd >/dev/null; then
    apt_install docker.io
  fi
  if pid1_is_systemd; then
    ok "starting docker.service"
    as_root systemctl start docker || die "systemctl start docker failed" "journalctl -u docker"
  else
    # No systemd: run dockerd ourselves. Where the kernel has RT group
    # scheduling (cgroup v1 cpu.rt_runtime_us) hand containers a real-time
    # budget, so a simulated drone's flight bridge can get SCHED_FIFO.
    opts=()
    [ -f /sys/fs/cgroup/cpu/cpu.rt_runtime_us ] && opts+=(--cpu-rt-runtime=950000)
    ok "starting dockerd ${opts[*]} (log: $DOCKERD_LOG)"
    as_root setsid dockerd "${opts[@]}" >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || die "the Docker engine did not answer within 60 s" \
    "read $DOCKERD_LOG (or journalctl -u docker), fix what it says, run setup again"
  ok "engine $(docker version --format '{{.Server.Version}}') is up"
fi

# --- 3. Package cache (the base camp's apt-cacher-ng) -----------------------
say "Package cache for the drones (apt-cacher-ng on port $ACNG_PORT)"
# Works means: Debian's Release file comes through it. A cache that merely
# listens may have no backend configured (the package leaves backends_debian
# empty when the host's sources are in deb822 form), so give it one ourselves.
acng_works() {
  python3 - "$ACNG_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/deb.debian.org/debian/dists/bookworm/Release"
with urllib.request.urlopen(url, timeout=20) as r:
    sys.exit(0 if r.status == 200 and b"Origin: Debian" in r.read(200) else 1)
PY
}
if acng_works; then
  ok "answers with Debian's archive (reused)"
else
  if pid1_is_systemd; then
    as_root systemctl stop apt-cacher-ng 2>/dev/null || true
  else
    as_root /etc/init.d/apt-cacher-ng stop >/dev/null 2>&1 || true
  fi
  as_root install -d -o apt-cacher-ng -g apt-cacher-ng /run/apt-cacher-ng
  as_root start-stop-daemon --start --quiet --chuid apt-cacher-ng:apt-cacher-ng \
    --pidfile /run/apt-cacher-ng/pid --exec /usr/sbin/apt-cacher-ng -- \
    -c /etc/apt-cacher-ng ForeGround=0 Port="$ACNG_PORT" \
    pidfile=/run/apt-cacher-ng/pid SocketPath=/run/apt-cacher-ng/socket \
    'Remap-debrep=file:deb_mirror*.gz /debian ; http://deb.debian.org/debian/' \
    'Remap-secdeb=security.debian.org deb.debian.org/debian-security ; http://deb.debian.org/debian-security/'
  for _ in $(seq 1 20); do acng_works && break; sleep 0.5; done
  acng_works || die "apt-cacher-ng does not fetch from Debian's archive" \
    "read /var/log/apt-cacher-ng/apt-cacher.err and check that deb.debian.org answers"
  ok "started, backed by deb.debian.org"
fi

fi  # ONLY_VENV

# --- 4. Controller virtual environment --------------------------------------
say "Controller virtual environment ($VENV)"
lock_sum=$(sha256sum "$LOCK" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
stamp=$VENV/.cloudrone-lock
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$lock_sum" ]; then
  ok "up to date with requirements/controller.lock (reused)"
else
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || {
      apt_install python3-venv
      python3 -m venv "$VENV"
    }
  fi
  ok "pip install -r requirements/controller.lock (about a minute the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -r "$LOCK" ||
    die "installing the pinned controller set failed" "read pip's error above"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" ||
    die "installing cloudrone itself failed" "read pip's error above"
  echo "$lock_sum" >"$stamp"
  ok "installed"
fi

# --- 4b. The offline map page's libraries -----------------------------------
if [ "$ONLY_VENV" != 1 ]; then
  say "Offline map page libraries (maplibre-gl, pmtiles; npm ci from cloudrone/camp/map)"
  "$VENV/bin/python" -m cloudrone.camp.maps vendor ||
    die "installing the map page's libraries failed" "read npm's error above"
fi

# --- 5. Drone base image ----------------------------------------------------
if [ "${CLOUDRONE_SETUP_SKIP_IMAGE:-0}" != 1 ] && [ "$ONLY_VENV" != 1 ]; then
  # The tests also run drones of the other releases the roles claim (Debian 13).
  which=()
  if [ "${CLOUDRONE_SETUP_ALL_SUITES:-0}" = 1 ]; then
    which=(--all-suites)
    say "Simulated drone images (Debian 12 and 13, systemd, python3, sshd; built with debootstrap)"
  else
    say "Simulated drone image (Debian 12, systemd, python3, sshd; built with debootstrap)"
  fi
  "$VENV/bin/python" -m cloudrone.fleet.image ensure "${which[@]}" ||
    die "building the drone image failed" "read the error above; the recipe is images/drone/"
fi

# --- 6. The services the controller builds in Python (the camp board) -------
if [ "${CLOUDRONE_SETUP_SKIP_IMAGE:-0}" != 1 ] && [ "$ONLY_VENV" != 1 ]; then
  say "Service images' base (Debian 12 with python3 alone) and their wheels (pycrdt)"
  "$VENV/bin/python" -m cloudrone.fleet.pyservice fetch >/dev/null ||
    die "downloading the services' wheels failed" "read pip's error above"
  "$VENV/bin/python" -m cloudrone.fleet.image ensure --image python ||
    die "building the python base image failed" "read the error above; the recipe is images/python/"
fi

say "Setup done"
