#!/bin/sh
# install-gitleaks.sh [--record FILE]: a real gitleaks when none is on the PATH (the secrets-scan job).
#
#   1. the pinned GitHub release (GITLEAKS_VERSION, its published sha256 checked) into /usr/local/bin;
#   2. when that cannot be downloaded or its checksum differs: Debian's `gitleaks` package, from the
#      host's own suites or, when they have none (bookworm), from trixie, pinned so that nothing
#      else ever comes from trixie (apt verifies the package; its only dependency is libc6 >= 2.34).
# Used by scripts/install_deps.sh (`make up`, `make test`) and the tools image. Root, or sudo.
# With --record FILE (the tools image), a failure of both ways is written to FILE as
# "gitleaks: <reason>" and the script exits 0, so the image still builds and the job says why.
# GITLEAKS_RELEASE_URL and DEBIAN_MIRROR override where it looks (tests simulate an outage).
set -u
VERSION=${GITLEAKS_VERSION:-8.18.4}
SHA256=${GITLEAKS_SHA256:-ba6dbb656933921c775ee5a2d1c13a91046e7952e9d919f9bac4cec61d628e7d}
URL=${GITLEAKS_RELEASE_URL:-https://github.com/gitleaks/gitleaks/releases/download/v$VERSION/gitleaks_${VERSION}_linux_x64.tar.gz}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SOURCES=/etc/apt/sources.list.d/namaskah-trixie.sources
PIN=/etc/apt/preferences.d/namaskah-trixie
RECORD=""
[ "${1:-}" = "--record" ] && RECORD=${2:?--record needs a file}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

say() { echo "install-gitleaks: $*"; }
fail() {
    if [ -n "$RECORD" ]; then
        echo "gitleaks: not in this image: $*" >>"$RECORD"
        exit 0
    fi
    say "$*" >&2
    exit 1
}

if command -v gitleaks >/dev/null 2>&1; then
    say "present: $(command -v gitleaks) ($(gitleaks version 2>/dev/null))"
    exit 0
fi

from_release() {
    [ "$(uname -m)" = x86_64 ] || { why="the pinned release is for x86_64, this is $(uname -m)"; return 1; }
    tmp=$(mktemp -d)
    if ! curl -fsSL --max-time 60 --retry 1 -o "$tmp/gitleaks.tar.gz" "$URL" 2>"$tmp/err"; then
        why="download of $URL failed ($(tail -n 1 "$tmp/err" | tr -d '\r'))"
        rm -rf "$tmp"
        return 1
    fi
    actual=$(sha256sum "$tmp/gitleaks.tar.gz" | cut -d' ' -f1)
    if [ "$actual" != "$SHA256" ]; then
        why="checksum mismatch for $URL (expected $SHA256, got $actual)"
        rm -rf "$tmp"
        return 1
    fi
    tar -xzf "$tmp/gitleaks.tar.gz" -C "$tmp" gitleaks && $SUDO install -m 0755 "$tmp/gitleaks" /usr/local/bin/gitleaks
    status=$?
    rm -rf "$tmp"
    [ $status = 0 ] || why="the release archive has no gitleaks binary"
    return $status
}

candidate() { apt-cache policy gitleaks 2>/dev/null | awk '/Candidate:/ {print $2}'; }

from_debian() {
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q >/dev/null || { why="apt-get update failed"; return 1; }
    found=$(candidate)
    if [ -z "$found" ] || [ "$found" = "(none)" ]; then
        say "the host's suites have no gitleaks package: adding trixie, pinned to gitleaks alone"
        printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$MIRROR" | $SUDO tee "$SOURCES" >/dev/null
        printf 'Package: *\nPin: release n=trixie\nPin-Priority: -10\n\nPackage: gitleaks\nPin: release n=trixie\nPin-Priority: 500\n' \
            | $SUDO tee "$PIN" >/dev/null
        $SUDO apt-get update -q >/dev/null || { why="apt-get update with trixie failed"; return 1; }
    fi
    $SUDO apt-get install -y -q --no-install-recommends gitleaks >/dev/null || { why="apt-get install gitleaks failed"; return 1; }
}

why=""
if from_release; then
    say "installed gitleaks $VERSION from the release (sha256 checked): $(gitleaks version 2>/dev/null)"
    exit 0
fi
say "$why; trying Debian's gitleaks package"
release_why=$why
if from_debian; then
    say "installed Debian's gitleaks $(dpkg-query -W -f '${Version}' gitleaks): $(command -v gitleaks)"
    exit 0
fi
fail "$release_why; Debian: $why"
