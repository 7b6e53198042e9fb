#!/bin/sh
# Runs inside the fresh root file system (chroot) before it becomes an image.
set -eu

# A container has no consoles, udev or kernel file systems to mount: keep
# systemd from waiting on them so `systemctl is-system-running` says running.
systemctl mask \
  getty@tty1.service console-getty.service serial-getty@.service \
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
  systemd-udev-trigger.service systemd-modules-load.service \
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-fs-fuse-connections.mount dev-hugepages.mount \
  systemd-remount-fs.service systemd-firstboot.service >/dev/null 2>&1

# Every drone gets its own identity on first boot, as a flashed Pi does.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*
cat >/etc/systemd/system/regenerate-ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate this drone's SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable regenerate-ssh-host-keys.service ssh.service >/dev/null 2>&1

# Keep apt's package lists, as a flashed image has them (named after the real
# mirror, fetched through the controller's cache when there is one); drop
# the downloaded archives.
rm -rf /var/lib/apt/lists/*
http_proxy="${CLOUDRONE_APT_PROXY:-}" apt-get -q update >/dev/null
apt-get clean
