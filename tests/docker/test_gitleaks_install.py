"""workers/tools/install-gitleaks.sh on a host without gitleaks (a fresh Debian bookworm container,
host networking): when the pinned release cannot be downloaded, Debian's package is installed from
trixie, pinned so that nothing else ever comes from trixie. The tools image carries what it installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from docker_harness import docker, require_engine_and_images

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]
TOOLS = Path(__file__).resolve().parents[2] / "workers" / "tools"
CHECK = """
set -e
dpkg-query -W -f '${Package}\\n' | sort >/tmp/before
/w/install-gitleaks.sh
command -v gitleaks
dpkg-query -W -f '${Version}\\n' gitleaks
apt-cache policy
echo '--- installed:'
dpkg-query -W -f '${Package}\\n' | sort | comm -13 /tmp/before -
echo '--- would come from trixie on an upgrade:'
apt-get -s dist-upgrade | grep -i trixie || true
"""


def test_an_unreachable_release_falls_back_to_debians_package_pinned_alone():
    require_engine_and_images()
    out = docker(
        "run",
        "--rm",
        "--network",
        "host",
        "-e",
        "GITLEAKS_RELEASE_URL=http://127.0.0.1:9/gitleaks.tar.gz",
        "-v",
        f"{TOOLS}:/w:ro",
        "namaskah-ci/base:bookworm",
        "sh",
        "-c",
        CHECK,
        timeout=540,
    )
    assert "download of http://127.0.0.1:9/gitleaks.tar.gz failed" in out
    assert "installed Debian's gitleaks 8.16" in out and "/usr/bin/gitleaks" in out
    assert " -10 http://deb.debian.org/debian trixie/main" in out  # the pin: trixie at -10 ...
    installed = out.split("--- installed:")[1].split("--- would come")[0].strip().splitlines()
    assert installed == ["gitleaks"]  # ... but gitleaks, and nothing else at all
    assert out.split("--- would come from trixie on an upgrade:")[1].strip() == ""


def test_the_tools_image_has_a_real_gitleaks():
    require_engine_and_images()
    out = docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "namaskah-ci/tools:latest",
        "-c",
        "command -v gitleaks; cat /etc/namaskah-tools-missing 2>/dev/null; true",
    )
    assert out.strip().splitlines()[0] in ("/usr/local/bin/gitleaks", "/usr/bin/gitleaks"), out
    assert "gitleaks:" not in out, out  # not recorded as missing
