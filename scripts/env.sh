# Sourced by the scripts: puts the Swift toolchain on PATH if it is not there yet.
if ! command -v swift >/dev/null 2>&1; then
  for d in /opt/swift/usr/bin /opt/swift/bin; do
    [ -x "$d/swift" ] && export PATH="$d:$PATH" && break
  done
fi
export TCP_NODELAY=1
