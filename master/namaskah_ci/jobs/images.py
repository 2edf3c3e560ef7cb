"""Which image a job's container runs in docker mode (pure: no Docker call).

`[workers] images` maps keys to images: a Python version (`"3.11"`), the roles
`tools` and the services (`postgres`, `redis`), or a builder's or job's own
name. A job takes its builder's or job's own image when one is named, else the
`tools` image when it declares `tools:`, else its Python version's (3.11's when
its version has none). Used by the docker workers and by the reuse key.
"""

from __future__ import annotations

import re

from namaskah_ci.pipeline.fields import SERVICES

VERSION_KEY = re.compile(r"^[0-9]+\.[0-9]+$")  # an image key that is a Python version
ROLE_KEYS = ("tools", *SERVICES)  # image keys that are never a builder's or job's own image


def image_from(images: dict[str, str], builder: str, job: str, python: str, tools: tuple[str, ...]) -> str:
    for key in (builder, job):
        # a job named `redis` or `tools` does not run in that image
        if key in images and key not in ROLE_KEYS and not VERSION_KEY.match(key):
            return images[key]
    if tools:
        return images["tools"]
    return images.get(python, images.get("3.11", ""))
