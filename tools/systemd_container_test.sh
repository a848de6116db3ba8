#!/usr/bin/env bash
# Boot edge-gateway's unit under a real systemd (PID 1 of a Debian bookworm container,
# systemd 252 as on Raspberry Pi OS bookworm) and check what unit tests cannot:
#
#   install   `python3 -m gateway install` (what `sudo make install` runs), for real
#   READY     `systemctl start` returns once the daemon said READY=1; Status= is current
#   reload    `systemctl reload` exits 0 for a good config, non-zero for a rejected one
#             (the daemon keeps running), the reason at priority err
#   bad start an invalid config at start: unit failed, status=2, NRestarts=0 (no loop),
#             reason in `journalctl -u edge-gateway -p err`
#   watchdog  SIGSTOP the main process: systemd kills it and restarts it
#   stop      `systemctl stop`: exit 0, inactive
#   uninstall nothing left owned by a deleted uid/gid, the groups install created gone,
#             config and spool kept (root-owned); --purge removes them
#
# Usage (root; not part of `make test`):  sudo tools/systemd_container_test.sh
# Needs debootstrap and systemd-nspawn (apt-get install debootstrap systemd-container;
# installed when missing) and the Debian mirror and PyPI (pip inside the container).
# The base image is cached in $EG_NSPAWN_DIR (default /var/tmp/eg-nspawn); each run
# boots a fresh copy of it. Works without systemd as the host's PID 1 (--register=no,
# --keep-unit); commands enter the container with nsenter.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${EG_NSPAWN_DIR:-/var/tmp/eg-nspawn}
BASE=$WORK/bookworm-base
MACHINE=$WORK/machine
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
UNIT=edge-gateway.service
CONFIG=/etc/edge-gateway/config.yaml

failures=0
passes=0
say() { printf '%s\n' "$*"; }
pass() { passes=$((passes + 1)); say "PASS  $*"; }
fail() { failures=$((failures + 1)); say "FAIL  $*"; }
die() { say "error: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and systemd-nspawn need it)"
if ! command -v debootstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap systemd-container >/dev/null
fi

mkdir -p "$WORK"
if [ ! -x "$BASE/usr/bin/python3" ]; then
    say "debootstrap bookworm into $BASE (once; cached)"
    rm -rf "$BASE.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,python3-venv,procps \
        bookworm "$BASE.tmp" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $WORK/debootstrap.log"
    mv "$BASE.tmp" "$BASE"
fi

rm -rf "$MACHINE"
cp -a "$BASE" "$MACHINE"
# Nothing in the container may take host ports (the network is the host's, for pip).
ln -sf /dev/null "$MACHINE/etc/systemd/system/mosquitto.service"
# pip inside the container trusts what the host's pip trusts (a site proxy's CA, say).
host_ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
if [ -f "$host_ca" ]; then
    mkdir -p "$MACHINE/etc/ssl/certs"
    cp "$host_ca" "$MACHINE/etc/ssl/certs/host-ca-bundle.crt"
    printf '[global]\ncert = /etc/ssl/certs/host-ca-bundle.crt\n' >"$MACHINE/etc/pip.conf"
fi
mkdir -p "$MACHINE/root/src"
(cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) \
    | tar -C "$MACHINE/root/src" -xf -

systemd-nspawn -D "$MACHINE" -M egtest --register=no --keep-unit --boot --console=passive \
    --resolv-conf=copy-host >"$WORK/console.log" 2>&1 &
NSPAWN=$!
cleanup() {
    if kill -0 "$NSPAWN" 2>/dev/null; then
        kill "$NSPAWN" 2>/dev/null || true
        wait "$NSPAWN" 2>/dev/null || true
    fi
}
trap cleanup EXIT

LEADER=""
for _ in $(seq 1 100); do
    LEADER=$(ps -o pid= --ppid "$NSPAWN" 2>/dev/null | head -n1 | tr -d ' ' || true)
    [ -n "$LEADER" ] && [ "$(cat "/proc/$LEADER/comm" 2>/dev/null)" = systemd ] && break
    LEADER=""
    sleep 0.2
done
[ -n "$LEADER" ] || { cat "$WORK/console.log" >&2; die "the container did not boot"; }

# Run a shell command inside the container (as root, in all its namespaces).
ct() {
    nsenter --target "$LEADER" --mount --uts --ipc --net --pid -- \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        SYSTEMD_PAGER= /bin/sh -c "$1"
}
prop() { ct "systemctl show -P $1 $UNIT"; }
# Wait up to $1 seconds for a shell condition inside the container.
wait_in() {
    local deadline=$((SECONDS + $1))
    while [ $SECONDS -lt $deadline ]; do
        ct "$2" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# systemctl answers once PID 1 has its private socket; then wait for the boot to finish.
wait_in 60 "test -S /run/systemd/private" || die "systemd in the container does not answer"
state=$(ct "systemctl is-system-running --wait 2>/dev/null" || true)
say "container booted: systemd $(ct 'systemctl --version | head -n1 | cut -d" " -f2') ($state)"

good_config() {
    ct "cat > $CONFIG <<EOF
gateway: {id: nspawn, simulate: true, stop_timeout: 1s}
mqtt: {host: 127.0.0.1, port: 1}
devices:
  - {name: air, driver: bme280, bus: 1, address: 0x76, interval: $1}
  - {name: probe, driver: tmp102, bus: 1, address: 0x48, interval: $1}
EOF"
}
bad_config() {
    ct "printf 'gateway: {id: nspawn, simulate: true}\nmqtt: {host: 127.0.0.1, qos: 7}\n' > $CONFIG"
}

# -- install ------------------------------------------------------------------------------
groups_before=$(ct "cut -d: -f1 /etc/group | sort")
if ct "cd /root/src && python3 -m gateway install" >"$WORK/install.log" 2>&1; then
    pass "install: python3 -m gateway install (log: $WORK/install.log)"
else
    fail "install failed:"; tail -n 20 "$WORK/install.log"
    exit 1
fi
created=$(comm -13 <(printf '%s\n' "$groups_before") <(ct "cut -d: -f1 /etc/group | sort") | xargs)
say "      groups created by install: $created"
ct "systemctl is-enabled $UNIT" | grep -qx enabled && pass "unit enabled" || fail "unit not enabled"
# A short watchdog and restart delay, so the checks below take seconds (a drop-in, as an
# admin would add one; the shipped unit is unchanged).
ct "mkdir -p /etc/systemd/system/$UNIT.d && printf '[Service]\nWatchdogSec=6s\nRestartSec=1s\n' \
    > /etc/systemd/system/$UNIT.d/test.conf && systemctl daemon-reload"

# -- READY and Status= ----------------------------------------------------------------------
good_config 500ms
if ct "systemctl start $UNIT"; then
    [ "$(prop ActiveState)/$(prop SubState)" = active/running ] \
        && pass "start: READY=1 reached, active/running (MainPID $(prop MainPID))" \
        || fail "start: $(prop ActiveState)/$(prop SubState)"
else
    fail "start failed"; ct "journalctl -u $UNIT -b --no-pager | tail -n 30"
fi
if wait_in 20 "systemctl show -P StatusText $UNIT | grep -q 'devices 2 ok, 0 failing'"; then
    pass "Status=: $(prop StatusText)"
else
    fail "Status= not current: $(prop StatusText)"
fi

# -- reload -----------------------------------------------------------------------------------
pid=$(prop MainPID)
good_config 700ms
if out=$(ct "systemctl reload $UNIT" 2>&1); then
    pass "reload (good config): exit 0; $(ct "journalctl -u $UNIT -b -o cat | grep 'reload: applied' | tail -n1")"
else
    fail "reload of a good config failed: $out"
fi
bad_config
if out=$(ct "systemctl reload $UNIT" 2>&1); then
    fail "reload of a bad config exited 0"
else
    pass "reload (bad config): systemctl reload exit $(ct "systemctl reload $UNIT" >/dev/null 2>&1; echo $?)"
fi
[ "$(prop MainPID)" = "$pid" ] && [ "$(prop ActiveState)" = active ] \
    && pass "reload (bad config): still running, same pid $pid" \
    || fail "reload (bad config): state $(prop ActiveState), pid $(prop MainPID) (was $pid)"
errs=$(ct "journalctl -u $UNIT -b -p err -o cat | grep 'mqtt.qos' | tail -n1")
[ -n "$errs" ] && pass "reload (bad config): reason at priority err: $errs" \
    || fail "reload (bad config): no reason at priority err"

# -- watchdog ---------------------------------------------------------------------------------
good_config 500ms
ct "systemctl reload $UNIT" >/dev/null
restarts=$(prop NRestarts)
pid=$(prop MainPID)
ct "kill -STOP $pid"
if wait_in 60 "[ \$(systemctl show -P NRestarts $UNIT) -gt $restarts ] && \
        [ \$(systemctl show -P MainPID $UNIT) != $pid ] && systemctl is-active -q $UNIT"; then
    pass "watchdog: SIGSTOPped pid $pid killed and restarted as pid $(prop MainPID) (NRestarts $(prop NRestarts)); $(ct "journalctl -u $UNIT -b -o cat | grep -i 'watchdog timeout' | tail -n1")"
else
    fail "watchdog: no restart (NRestarts $(prop NRestarts), MainPID $(prop MainPID))"
fi

# -- stop -------------------------------------------------------------------------------------
if ct "systemctl stop $UNIT" && [ "$(prop ActiveState)" = inactive ] && [ "$(prop ExecMainStatus)" = 0 ]; then
    pass "stop: exit 0, inactive, main process exit status 0"
else
    fail "stop: $(prop ActiveState), status $(prop ExecMainStatus)"
fi

# -- an invalid config at start -----------------------------------------------------------------
bad_config
ct "systemctl reset-failed $UNIT" || true
if ct "systemctl start $UNIT" 2>/dev/null; then
    fail "start with a bad config succeeded"
else
    pass "start (bad config): systemctl start failed"
fi
sleep 8  # with RestartSec=1s a restart loop would have run several times by now
st="$(prop ActiveState) result=$(prop Result) status=$(prop ExecMainStatus) NRestarts=$(prop NRestarts)"
[ "$st" = "failed result=exit-code status=2 NRestarts=0" ] \
    && pass "start (bad config): no restart loop: $st" || fail "start (bad config): $st"
errs=$(ct "journalctl -u $UNIT -b -p err -o cat | grep -v '^reload' | grep 'mqtt.qos' | tail -n1")
[ -n "$errs" ] && pass "start (bad config): journalctl -p err: $errs" \
    || fail "start (bad config): the reason is not at priority err"

# -- uninstall ----------------------------------------------------------------------------------
good_config 500ms
ct "systemctl reset-failed $UNIT" || true
if ct "cd /root/src && python3 -m gateway uninstall" >"$WORK/uninstall.log" 2>&1; then
    pass "uninstall: exit 0"
else
    fail "uninstall failed:"; tail -n 20 "$WORK/uninstall.log"
fi
orphans=$(ct "find / -xdev \\( -nouser -o -nogroup \\) -print 2>/dev/null | head -n 20")
[ -z "$orphans" ] && pass "uninstall: no file owned by a deleted uid/gid" \
    || fail "uninstall: left owned by a deleted uid/gid: $(echo $orphans)"
left=""
for g in edge-gateway $created; do
    ct "getent group $g" >/dev/null && left="$left $g"
done
ct "getent passwd edge-gateway" >/dev/null && left="$left user:edge-gateway"
[ -z "$left" ] && pass "uninstall: user and the groups it created ($created) removed" \
    || fail "uninstall: still there:$left"
kept=$(ct "stat -c '%n %U:%G' /etc/edge-gateway /var/lib/edge-gateway 2>&1" | xargs)
case "$kept" in
    "/etc/edge-gateway root:root /var/lib/edge-gateway root:root") pass "uninstall: kept, handed to root: $kept";;
    *) fail "uninstall: kept data: $kept";;
esac
ct "test ! -e /etc/systemd/system/$UNIT && test ! -e /opt/edge-gateway" \
    && pass "uninstall: unit and venv removed" || fail "uninstall: unit or venv left"
ct "cd /root/src && python3 -m gateway uninstall --purge" >>"$WORK/uninstall.log" 2>&1 \
    && ct "test ! -e /etc/edge-gateway && test ! -e /var/lib/edge-gateway" \
    && pass "uninstall --purge: config and spool removed" \
    || fail "uninstall --purge: $(ct 'ls -d /etc/edge-gateway /var/lib/edge-gateway 2>&1' | xargs)"

say ""
say "$passes passed, $failures failed (container log: $WORK/console.log)"
[ "$failures" = 0 ]
