#!/usr/bin/env bash
# Interpreters the jobs' unprivileged user can run: a root master runs local jobs as [workers] job_user,
# which cannot enter a private home such as /root, where pyenv keeps its Pythons. For each version
# asked for (default: the matrix's 3.9 and 3.11) that is not on the system PATH but only in a pyenv
# under such a home, copy that pyenv version to /opt/namaskah-ci/python/<version> (world-readable;
# the master's interpreter lookup, namaskah_ci/jobs/hostenv.py, looks there before pyenv; a job's sandbox
# mounts the installation of its interpreter read-only, which the job user must be able to enter). Root only;
# does nothing when every version is reachable. Used by scripts/install_deps.sh.
set -euo pipefail
TARGET=${NAMASKAH_PYTHONS:-/opt/namaskah-ci/python}
PYENV=${PYENV_ROOT:-$HOME/.pyenv}
[ "$(id -u)" = 0 ] || exit 0

system_python() {  # a python<version> on the PATH outside pyenv and outside private homes
    local version=$1 dir
    IFS=: read -ra dirs <<<"$PATH"
    for dir in "${dirs[@]}"; do
        case $dir in */shims|*/.pyenv/*|/root/*|/home/*) continue ;; esac
        [ -x "$dir/python$version" ] && return 0
    done
    return 1
}

for version in ${NAMASKAH_PYTHON_VERSIONS:-3.9 3.11}; do
    system_python "$version" && continue
    ls -d "$TARGET/$version".* >/dev/null 2>&1 && continue
    source=$(ls -d "$PYENV/versions/$version".* 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$source" ] && [ -x "$source/bin/python$version" ] || continue
    echo "copying $source to $TARGET/ (the job user cannot enter $(dirname "$PYENV"))"
    mkdir -p "$TARGET"
    cp -a "$source" "$TARGET/$(basename "$source").tmp"
    rm -rf "$TARGET/$(basename "$source").tmp/lib/python$version/site-packages"/*/  # the copy needs no packages
    copy="$TARGET/$(basename "$source").tmp"
    # a --enable-shared build finds its libpython through a RUNPATH into the source: point it at the copy
    if readelf -d "$copy/bin/python$version" 2>/dev/null | grep -q "R.*PATH.*$source"; then
        command -v patchelf >/dev/null ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends patchelf >/dev/null
        for binary in "$copy/bin/python$version" "$copy"/lib/libpython"$version"*.so*; do
            [ -f "$binary" ] && [ ! -L "$binary" ] && patchelf --set-rpath '$ORIGIN/../lib' "$binary"
        done
    fi
    mv "$copy" "$TARGET/$(basename "$source")"
    chmod -R go+rX "$TARGET"
done
