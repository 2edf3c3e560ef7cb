"""Docker-mode tests: unit tests against a fake engine, and `@pytest.mark.docker` tests against a real one.

The real-engine tests skip, saying why, only when no Docker engine answers
(`scripts/start_docker.sh` starts one; `.ci/run` calls it) or an image is
missing (`make images`).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fake_engine, docker_harness
