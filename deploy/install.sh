#!/usr/bin/env bash
# Installs perfd on this machine: binary, models, man page, shell completion, system user,
# directories, sample config, systemd unit.
#
#   sudo deploy/install.sh                       build a release binary and install it
#   sudo deploy/install.sh --binary PATH         install an already-built perfd instead
#   deploy/install.sh --destdir DIR [--binary PATH]
#                                                stage the same tree under DIR (packaging, tests):
#                                                no user creation, no chown, no systemctl
#
# Safe to run again (upgrade): the binary, models, man page, completion and unit are replaced, an existing
# /etc/perfd/perfd.yaml and everything in /var/lib/perfd are left as they are.
set -euo pipefail

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
BINARY=""

while [ $# -gt 0 ]; do
    case "$1" in
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; DESTDIR=$2; shift 2 ;;
        --destdir=*) DESTDIR=${1#--destdir=}; shift ;;
        --binary) [ $# -ge 2 ] || die "--binary needs the path of a built perfd"; BINARY=$2; shift 2 ;;
        --binary=*) BINARY=${1#--binary=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument \"$1\" (see --help)" ;;
    esac
done

STAGING=0
if [ -n "$DESTDIR" ]; then
    STAGING=1
    mkdir -p "$DESTDIR" || die "cannot create the staging directory $DESTDIR"
    DESTDIR=$(cd "$DESTDIR" && pwd)
    [ "$DESTDIR" != "/" ] || die "--destdir / is a real install; run without --destdir (as root) instead"
elif [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or stage into a directory with --destdir DIR"
fi

BIN_DIR=$DESTDIR/usr/local/bin
ETC_DIR=$DESTDIR/etc/perfd
TLS_DIR=$ETC_DIR/tls
STATE_DIR=$DESTDIR/var/lib/perfd
SPOOL_DIR=$STATE_DIR/spool
UNIT_DIR=$DESTDIR/etc/systemd/system
DOC_DIR=$DESTDIR/usr/share/doc/perfd
# Beside the binary's prefix: /usr/local/bin/perfd finds /usr/local/share/perfd/models by
# itself (no PERFD_MODELS), and so does a staged DIR/usr/local/bin/perfd.
MODEL_DIR=$DESTDIR/usr/local/share/perfd/models
MAN_DIR=$DESTDIR/usr/local/share/man/man1
BASH_COMPLETION_DIR=$DESTDIR/usr/local/share/bash-completion/completions
ZSH_COMPLETION_DIR=$DESTDIR/usr/local/share/zsh/site-functions

[ -f "$REPO/systemd/perfd.service" ] || die "$REPO/systemd/perfd.service is missing; run this script from a perfd checkout"
for m in perfusion-clstm ncct-clstm; do
    [ -f "$REPO/models/$m/model.json" ] && [ -f "$REPO/models/$m/weights.safetensors" ] \
        || die "$REPO/models/$m is incomplete (model.json and weights.safetensors); run this script from a full perfd checkout"
done
[ -f "$REPO/deploy/perfd.1" ] || die "$REPO/deploy/perfd.1 is missing; run this script from a perfd checkout"
[ -f "$REPO/deploy/perfd.yaml" ] || die "$REPO/deploy/perfd.yaml is missing; run this script from a perfd checkout"

# --- the binary --------------------------------------------------------------------------
if [ -n "$BINARY" ]; then
    if [ ! -f "$BINARY" ] || [ ! -x "$BINARY" ]; then
        die "--binary $BINARY is not an executable file; build it (swift build -c release --product perfd --static-swift-stdlib) or fix the path"
    fi
else
    say "building perfd (release, swift build -c release --product perfd --static-swift-stdlib) in $REPO — several minutes the first time"
    # The Swift runtime and Foundation are linked statically, so the installed binary needs
    # only the Debian libraries (DCMTK, OpenBLAS, Cairo, SQLite), not the toolchain.
    # Build output goes to stderr so the person sees it; stdout carries only the bin path.
    build() {
        # shellcheck source=/dev/null
        cd "$REPO" && source scripts/env.sh &&
            swift build -c release --product perfd --static-swift-stdlib >&2 &&
            swift build -c release --static-swift-stdlib --show-bin-path
    }
    if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        # Build as the user who called sudo, so .build/ does not end up owned by root.
        user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        BIN_PATH=$(runuser -u "$SUDO_USER" -- env HOME="$user_home" bash -c "$(declare -f build); REPO='$REPO'; build" | tail -n 1) \
            || die "the release build failed (output above); fix it, or pass --binary PATH"
    else
        BIN_PATH=$( (build) | tail -n 1 ) || die "the release build failed (output above); fix it, or pass --binary PATH"
    fi
    BINARY=$BIN_PATH/perfd
    [ -x "$BINARY" ] || die "the build finished but $BINARY is missing"
fi
"$BINARY" --help >/dev/null 2>&1 || die "$BINARY does not run (missing shared libraries? try: ldd $BINARY)"

if [ "$STAGING" -eq 1 ]; then
    say "staging into $DESTDIR: no user is created, nothing is chowned to perfd, systemctl is not run"
fi

# --- user and group ----------------------------------------------------------------------
if [ "$STAGING" -eq 0 ]; then
    if getent group perfd >/dev/null; then
        say "group perfd exists"
    else
        groupadd --system perfd
        say "created system group perfd"
    fi
    if getent passwd perfd >/dev/null; then
        say "user perfd exists"
    else
        nologin=$(command -v nologin || echo /usr/sbin/nologin)
        useradd --system --gid perfd --no-create-home --home-dir /nonexistent --shell "$nologin" \
            --comment "perfd CT perfusion daemon" perfd
        say "created system user perfd (no login shell, no home)"
    fi
fi

# owner USER:GROUP PATH... — chown in a real install; staged trees keep the caller's owner.
owner() {
    local who=$1; shift
    if [ "$STAGING" -eq 0 ]; then chown "$who" "$@"; fi
}

# owned TEXT — TEXT in a real install, nothing when staged (for messages).
owned() { if [ "$STAGING" -eq 0 ]; then printf '%s' "$1"; fi; }

# --- files -------------------------------------------------------------------------------
install -d -m 0755 "$BIN_DIR"
# Copy then rename: a running perfd keeps its old inode, and no half-written binary is ever
# at the final path.
install -m 0755 "$BINARY" "$BIN_DIR/.perfd.new"
mv -f "$BIN_DIR/.perfd.new" "$BIN_DIR/perfd"
say "installed $BIN_DIR/perfd"

# Models: replaced as a whole on every run (an upgrade brings the models this binary was
# tested with); a new copy is written beside the old one and renamed over it.
install -d -m 0755 "$MODEL_DIR"
for m in perfusion-clstm ncct-clstm; do
    rm -rf "$MODEL_DIR/.$m.new"
    install -d -m 0755 "$MODEL_DIR/.$m.new"
    for f in model.json weights.safetensors MODEL_CARD.md; do
        [ -f "$REPO/models/$m/$f" ] && install -m 0644 "$REPO/models/$m/$f" "$MODEL_DIR/.$m.new/$f"
    done
    rm -rf "$MODEL_DIR/$m"
    mv "$MODEL_DIR/.$m.new" "$MODEL_DIR/$m"
done
say "installed the models perfusion-clstm and ncct-clstm in $MODEL_DIR"

# Man page and shell completion (the completion scripts are written by the binary itself,
# so they always match its commands and options).
install -d -m 0755 "$MAN_DIR" "$BASH_COMPLETION_DIR" "$ZSH_COMPLETION_DIR"
install -m 0644 "$REPO/deploy/perfd.1" "$MAN_DIR/perfd.1"
"$BIN_DIR/perfd" --generate-completion-script bash > "$BASH_COMPLETION_DIR/perfd" || die "perfd --generate-completion-script bash failed"
"$BIN_DIR/perfd" --generate-completion-script zsh > "$ZSH_COMPLETION_DIR/_perfd" || die "perfd --generate-completion-script zsh failed"
chmod 0644 "$BASH_COMPLETION_DIR/perfd" "$ZSH_COMPLETION_DIR/_perfd"
say "man page $MAN_DIR/perfd.1; completion $BASH_COMPLETION_DIR/perfd (bash), $ZSH_COMPLETION_DIR/_perfd (zsh)"

# State: patient data lives here, readable by perfd alone. Modes are (re)applied on every
# run; contents are never touched.
install -d -m 0755 "$DESTDIR/var/lib"
for d in "$STATE_DIR" "$SPOOL_DIR"; do
    install -d -m 0700 "$d"
    chmod 0700 "$d"
    owner perfd:perfd "$d"
done
say "state directory $STATE_DIR (spool $SPOOL_DIR), mode 0700$(owned ', owner perfd:perfd')"

# Config: root writes it, perfd reads it through its group.
install -d -m 0750 "$ETC_DIR" "$TLS_DIR"
chmod 0750 "$ETC_DIR" "$TLS_DIR"
owner root:perfd "$ETC_DIR" "$TLS_DIR"
install -m 0640 "$REPO/deploy/perfd.yaml" "$ETC_DIR/perfd.yaml.sample"
owner root:perfd "$ETC_DIR/perfd.yaml.sample"
if [ -e "$ETC_DIR/perfd.yaml" ]; then
    say "kept the existing $ETC_DIR/perfd.yaml (this version's sample is $ETC_DIR/perfd.yaml.sample)"
else
    install -m 0640 "$REPO/deploy/perfd.yaml" "$ETC_DIR/perfd.yaml"
    owner root:perfd "$ETC_DIR/perfd.yaml"
    say "wrote the sample config $ETC_DIR/perfd.yaml (mode 0640$(owned ', root:perfd')) — edit allowed_peers and destinations"
fi

install -d -m 0755 "$UNIT_DIR"
install -m 0644 "$REPO/systemd/perfd.service" "$UNIT_DIR/perfd.service"
say "installed $UNIT_DIR/perfd.service"
# MemoryMax= matches memory_limit_gb: the unit's own 80% of the machine sits above the
# default budget (75%); a config that sets memory_limit_gb gets a drop-in 7% above it, so
# the kernel's limit is never what stops a job (perfd fails a series that would not fit).
DROPIN_DIR=$UNIT_DIR/perfd.service.d
limit=$(sed -n 's/^memory_limit_gb:[[:space:]]*\([0-9.]*\).*/\1/p' "$ETC_DIR/perfd.yaml" | head -1)
if [ -n "$limit" ]; then
    install -d -m 0755 "$DROPIN_DIR"
    mb=$(awk -v g="$limit" 'BEGIN { printf "%d", g * 1.07 * 1000 + 0.999 }')
    printf '# Written by deploy/install.sh from memory_limit_gb: %s in /etc/perfd/perfd.yaml\n[Service]\nMemoryMax=%sM\n' "$limit" "$mb" > "$DROPIN_DIR/memory.conf"
    chmod 0644 "$DROPIN_DIR/memory.conf"
    say "MemoryMax=${mb}M ($DROPIN_DIR/memory.conf, from memory_limit_gb: $limit)"
else
    rm -f "$DROPIN_DIR/memory.conf"
    say "MemoryMax=80% of the machine (the unit's default; memory_limit_gb defaults to 75%)"
fi

install -d -m 0755 "$DOC_DIR"
for f in README.md deploy/CONFORMANCE.md docs/ARCHITECTURE.md; do
    [ -f "$REPO/$f" ] && install -m 0644 "$REPO/$f" "$DOC_DIR/$(basename "$f")"
done
say "documentation in $DOC_DIR"

# --- check the config with the installed binary -----------------------------------------
CONFIG_OK=1
if check=$("$BIN_DIR/perfd" check-config --config "$ETC_DIR/perfd.yaml" 2>&1); then
    echo "$check"
else
    CONFIG_OK=0
    echo "$check" >&2
    echo "install.sh: WARNING: $ETC_DIR/perfd.yaml does not pass check-config (problems above); perfd will not start until it does" >&2
fi

# --- systemd -----------------------------------------------------------------------------
if [ "$STAGING" -eq 1 ]; then
    say "done (staged). On the target machine: create the perfd user, chown $STATE_DIR to perfd:perfd and $ETC_DIR to root:perfd, then systemctl daemon-reload && systemctl enable perfd"
    exit 0
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable perfd.service
    say "perfd.service enabled (starts at boot); not started."
else
    say "systemd is not running on this machine: the unit is installed but was not enabled (run: systemctl enable perfd)"
fi
if [ "$CONFIG_OK" -eq 0 ]; then
    echo "install.sh: fix /etc/perfd/perfd.yaml first (see the check-config output above)" >&2
fi
cat <<EOF

Next steps:
  1. edit /etc/perfd/perfd.yaml (allowed_peers: your scanners; destinations: your PACS)
  2. sudo -u perfd perfd check-config     (the same checks perfd serve runs before it starts)
  3. sudo systemctl start perfd && sudo -u perfd perfd status
  man perfd describes every command; shell completion works in a new shell
EOF
