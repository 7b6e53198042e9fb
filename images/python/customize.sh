#!/bin/sh
# Runs inside the fresh root file system (chroot) before it becomes an image:
# what a service never reads goes, to keep the archive a drone loads small.
# The image is never upgraded in place (a changed recipe builds a new one), so
# the package tools and their database go too.
set -eu
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
  /usr/share/zoneinfo /usr/share/bash-completion /usr/share/common-licenses \
  /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/* /var/log/*
# the test suite of the standard library and the tools no service runs
rm -rf /usr/lib/python3.11/test /usr/lib/python3.11/idlelib /usr/lib/python3.11/tkinter \
  /usr/lib/python3.11/lib2to3 /usr/lib/python3.11/pydoc_data /usr/lib/python3.11/ensurepip
find /usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
# perl (debconf's), apt and dpkg with their libraries, and glibc's iconv
# modules: python3 uses none of them
multiarch=$(dirname "$(find /usr/lib -maxdepth 2 -name 'libc.so.6' | head -n 1)")
rm -rf /usr/bin/perl* /usr/share/perl5 /usr/share/debconf /usr/share/dpkg /usr/share/apt \
  "$multiarch"/perl-base "$multiarch"/gconv "$multiarch"/libapt-* \
  /usr/lib/apt /usr/lib/dpkg /usr/bin/apt* /usr/bin/dpkg* /usr/bin/debconf* \
  /var/lib/dpkg /var/lib/apt /var/cache/debconf /etc/apt
