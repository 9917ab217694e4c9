#!/usr/bin/env bash
# Removes perfd from this machine: stops and disables the service, removes the binary, the
# unit and the documentation.
#
#   sudo deploy/uninstall.sh                     keeps /etc/perfd and /var/lib/perfd (patient data)
#   sudo deploy/uninstall.sh --purge-data        also deletes them and the perfd user (asks first)
#   sudo deploy/uninstall.sh --purge-data --yes  the same without asking
#   deploy/uninstall.sh --destdir DIR [...]      the same on a tree staged by install.sh --destdir
#
# Safe to run again: what is already gone is skipped.
set -euo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

die() { echo "uninstall.sh: error: $*" >&2; exit 1; }
say() { echo "uninstall.sh: $*"; }

DESTDIR=${DESTDIR:-}
PURGE=0
YES=0

while [ $# -gt 0 ]; do
    case "$1" in
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; DESTDIR=$2; shift 2 ;;
        --destdir=*) DESTDIR=${1#--destdir=}; shift ;;
        --purge-data) PURGE=1; shift ;;
        --yes|-y) YES=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument \"$1\" (see --help)" ;;
    esac
done

STAGING=0
if [ -n "$DESTDIR" ]; then
    STAGING=1
    [ -d "$DESTDIR" ] || die "--destdir $DESTDIR does not exist; nothing is staged there"
    DESTDIR=$(cd "$DESTDIR" && pwd)
    [ "$DESTDIR" != "/" ] || die "--destdir / is the real system; run without --destdir (as root) instead"
elif [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or point at a staged tree with --destdir DIR"
fi

BIN=$DESTDIR/usr/local/bin/perfd
UNIT=$DESTDIR/etc/systemd/system/perfd.service
DOC_DIR=$DESTDIR/usr/share/doc/perfd
ETC_DIR=$DESTDIR/etc/perfd
STATE_DIR=$DESTDIR/var/lib/perfd

if [ "$STAGING" -eq 1 ]; then
    say "staged tree $DESTDIR: systemctl and userdel are not run"
fi

# --- the service -------------------------------------------------------------------------
if [ "$STAGING" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        if systemctl is-active --quiet perfd.service; then
            say "stopping perfd (running associations and the current job stage finish first)"
            systemctl stop perfd.service
        fi
        if systemctl is-enabled --quiet perfd.service 2>/dev/null; then
            systemctl disable perfd.service
            say "disabled perfd.service"
        fi
    else
        say "systemd is not running on this machine: nothing to stop"
    fi
fi

# --- binary, unit, documentation ---------------------------------------------------------
# Read the data paths from the config before it may go, to say where data outside
# /var/lib/perfd lives.
extra_paths=()
if [ -f "$ETC_DIR/perfd.yaml" ]; then
    while IFS= read -r p; do
        case "$p" in /var/lib/perfd|/var/lib/perfd/*|"") ;; *) extra_paths+=("$p") ;; esac
    done < <(sed -n -E 's/^(spool_dir|database):[[:space:]]*"?([^"#]*[^"#[:space:]])"?.*$/\2/p' "$ETC_DIR/perfd.yaml")
fi

for f in "$BIN" "$UNIT" "$DESTDIR/usr/local/share/man/man1/perfd.1" \
         "$DESTDIR/usr/local/share/bash-completion/completions/perfd" "$DESTDIR/usr/local/share/zsh/site-functions/_perfd"; do
    if [ -e "$f" ]; then rm -f "$f"; say "removed $f"; else say "$f is already gone"; fi
done
rm -rf "$DOC_DIR" "$DESTDIR/usr/local/share/perfd"
say "removed the models in $DESTDIR/usr/local/share/perfd"
[ -d "$UNIT.d" ] && { rm -rf "$UNIT.d"; say "removed $UNIT.d"; }
if [ "$STAGING" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed perfd.service 2>/dev/null || true
fi

# --- data --------------------------------------------------------------------------------
if [ "$PURGE" -eq 0 ]; then
    say "kept $ETC_DIR (config, TLS keys) and $STATE_DIR (spool with patient images, database)"
    say "to delete them too: $0 --purge-data${DESTDIR:+ --destdir $DESTDIR}"
    exit 0
fi

if [ "$YES" -eq 0 ]; then
    [ -t 0 ] || die "--purge-data deletes patient data; confirm on a terminal, or add --yes"
    echo "This deletes $STATE_DIR (received patient images, the job database and audit trail)"
    echo "and $ETC_DIR (configuration, TLS keys and certificates). It cannot be undone."
    read -r -p "Type yes to delete them: " answer
    [ "$answer" = yes ] || die "not confirmed; nothing deleted"
fi
rm -rf "$STATE_DIR" "$ETC_DIR"
say "deleted $STATE_DIR and $ETC_DIR"
if [ "$STAGING" -eq 0 ]; then
    if getent passwd perfd >/dev/null; then userdel perfd && say "removed user perfd"; fi
    if getent group perfd >/dev/null; then groupdel perfd && say "removed group perfd"; fi
fi
for p in "${extra_paths[@]}"; do
    say "NOTE: the config pointed spool_dir/database at $p, outside /var/lib/perfd; it was NOT deleted — remove it by hand if it is perfd's"
done
