#!/usr/bin/env bash
# Build every Namaskah CI image on this Docker engine, reusing what exists.
#
#   workers/build_images.sh            # base images (if missing), then every image (layer cache)
#   workers/build_images.sh --official # production: FROM the official images (needs a registry)
#   workers/build_images.sh --with-master  # also namaskah-ci/master:latest (docker-compose.yml's master)
#   workers/build_images.sh --list     # print the image names and exit
#
# Without a registry (the default) the Debian base images are made here with
# debootstrap and `docker import` (bookworm: Python 3.11, PostgreSQL 15,
# Redis 7; bullseye: Python 3.9); an existing base image is reused. Every other
# image is a `docker build --network host` with the base passed as BASE_IMAGE,
# so an unchanged Dockerfile is a layer-cache hit and takes seconds.
# The host's CA bundle goes into the images (pip, git and requests inside the
# containers trust what the host trusts); production images get the system bundle.
#
# Environment: DEBIAN_MIRROR (http://deb.debian.org/debian), NAMASKAH_IMAGE_PREFIX
# (namaskah-ci), CA_BUNDLE (the host's bundle), BUILD_LOG_DIR (where each
# build's output goes; default .state/image-builds).
set -euo pipefail
cd "$(dirname "$0")"
WORKERS=$PWD
ROOT=$(dirname "$WORKERS")

PREFIX=${NAMASKAH_IMAGE_PREFIX:-namaskah-ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
LOGS=${BUILD_LOG_DIR:-$ROOT/.state/image-builds}
OFFICIAL=0
MASTER=0

for arg in "$@"; do
    case "$arg" in
    --official) OFFICIAL=1 ;;
    --with-master) MASTER=1 ;;
    --list)
        for name in base:bookworm base:bullseye worker:py3.11 worker:py3.11-servers worker:py3.9 tools:latest \
            postgres:15 redis:7 master:latest; do echo "$PREFIX/$name"; done
        exit 0
        ;;
    *) echo "usage: $0 [--official] [--with-master] | --list" >&2; exit 2 ;;
    esac
done

mkdir -p "$LOGS"
now() { date +%s; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }
elapsed() { echo "$(( $(now) - $1 ))s"; }

# --- the CA bundle every image trusts -------------------------------------------------
CA_SRC=${CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
mkdir -p "$WORKERS/common/ca"
if [ "$OFFICIAL" = 0 ] && [ -s "$CA_SRC" ]; then
    cp "$CA_SRC" "$WORKERS/common/ca/ca-bundle.crt"
else
    rm -f "$WORKERS/common/ca/ca-bundle.crt"
fi

# --- Debian base images: debootstrap + docker import ------------------------------------
debian_base() {  # debian_base SUITE
    local suite=$1 image="$PREFIX/base:$1" started rootfs
    if exists "$image"; then
        echo "base $image: present, reused"
        return
    fi
    if ! command -v debootstrap >/dev/null; then
        if [ "$(id -u)" != 0 ]; then
            echo "debootstrap is not installed (Debian: apt-get install debootstrap, as root)" >&2
            exit 1
        fi
        echo "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                --no-install-recommends debootstrap >/dev/null; }
    fi
    started=$(now)
    rootfs=$(mktemp -d "/tmp/namaskah-rootfs-$suite.XXXXXX")
    echo "base $image: debootstrap $suite from $MIRROR (log: $LOGS/base-$suite.log)"
    if ! debootstrap --variant=minbase --include=ca-certificates "$suite" "$rootfs" "$MIRROR" \
        >"$LOGS/base-$suite.log" 2>&1; then
        tail -n 20 "$LOGS/base-$suite.log" >&2
        rm -rf "$rootfs"
        exit 1
    fi
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SOURCES
    # what the official debian:*-slim images leave out: apt caches, docs, man pages
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
        >"$rootfs/etc/dpkg/dpkg.cfg.d/01-slim"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/01-slim"
    # as in the official images: no downloaded .debs or package caches left in any layer
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APTCONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APTCONF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | docker import \
        --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
        --message "debootstrap --variant=minbase $suite" - "$image" >/dev/null
    rm -rf "$rootfs"
    echo "base $image: built in $(elapsed "$started")"
}

build() {  # build TAG DIR [--build-arg ...]
    local tag=$1 dir=$2 started
    shift 2
    started=$(now)
    if ! docker build --network host --force-rm -t "$tag" -f "$dir/Dockerfile" "$@" "$WORKERS" \
        >"$LOGS/$(echo "$tag" | tr '/:' '__').log" 2>&1; then
        echo "image $tag: build failed; last lines of the log:" >&2
        tail -n 30 "$LOGS/$(echo "$tag" | tr '/:' '__').log" >&2
        exit 1
    fi
    echo "image $tag: ready in $(elapsed "$started") ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1000000}'))"
}

master_image() {  # a minimal build context: the checkout also holds virtualenvs, state, the app's .dockerignore
    local started log
    started=$(now)
    log="$LOGS/${PREFIX//\//_}_master_latest.log"
    if ! tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -c pyproject.toml master scripts workers/common/ca |
        docker build --network host --force-rm -f master/Dockerfile -t "$PREFIX/master:latest" \
            --build-arg "BASE_IMAGE=$MASTER_BASE" - >"$log" 2>&1; then
        echo "image $PREFIX/master:latest: build failed; last lines of the log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
    echo "image $PREFIX/master:latest: ready in $(elapsed "$started")"
}

wait_all() {  # wait for every background lane; fail if one failed
    local status=0 pid
    for pid in "$@"; do wait "$pid" || status=1; done
    [ "$status" = 0 ] || { echo "image build failed (logs: $LOGS)" >&2; exit 1; }
}

total=$(now)
if [ "$OFFICIAL" = 1 ]; then
    PY311=python:3.11-slim-bookworm
    PY39=python:3.9-slim-bullseye
    MASTER_BASE=python:3.11-slim-bookworm
else
    # the two debootstraps are mostly downloads and dpkg: side by side
    debian_base bookworm &
    lane1=$!
    debian_base bullseye &
    lane2=$!
    wait_all "$lane1" "$lane2"
    PY311=$PREFIX/base:bookworm
    PY39=$PREFIX/base:bullseye
    MASTER_BASE=$PREFIX/base:bookworm
fi

# two lanes: the 3.11 worker and the tools image on it; everything else beside them
(
    build "$PREFIX/worker:py3.11" python --build-arg "BASE_IMAGE=$PY311" --build-arg PYTHON_VERSION=3.11
    build "$PREFIX/worker:py3.11-servers" servers --build-arg "WORKER_IMAGE=$PREFIX/worker:py3.11" &
    servers=$!
    build "$PREFIX/tools:latest" tools --build-arg "WORKER_IMAGE=$PREFIX/worker:py3.11"
    wait "$servers"
) &
lane1=$!
(
    build "$PREFIX/worker:py3.9" python --build-arg "BASE_IMAGE=$PY39" --build-arg PYTHON_VERSION=3.9
    if [ "$OFFICIAL" = 1 ]; then
        # the official postgres and redis images are used as they are (see docs/docker.md)
        echo "services: the official postgres:15-bookworm and redis:7-bookworm images are used directly"
    else
        build "$PREFIX/postgres:15" postgres --build-arg "BASE_IMAGE=$PY311"
        build "$PREFIX/redis:7" redis --build-arg "BASE_IMAGE=$PY311"
    fi
    if [ "$MASTER" = 1 ]; then master_image; fi
) &
lane2=$!
wait_all "$lane1" "$lane2"
echo "all images ready in $(elapsed "$total")"
