#!/bin/sh
# Runs inside the fresh root file system (chroot) before it becomes an image:
# what a service never reads goes, to keep the archive a drone loads small.
set -eu
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
  /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/*
# the test suite of the standard library and the tools no service runs
rm -rf /usr/lib/python3.11/test /usr/lib/python3.11/idlelib /usr/lib/python3.11/tkinter \
  /usr/lib/python3.11/lib2to3 /usr/lib/python3.11/pydoc_data
find /usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
