"""buildbot#8758: the React UI ignores `c['www']['default_page']` (fixed after 4.3.0 by buildbot#8803).

The part of the address after `#` never reaches the server, so `apply` adds
one line of script to the index page the server renders: opening the web UI
at its root (no route, or `#/`) lands on the pipeline dashboard; the menu's
*Home* still shows Buildbot's own page.
"""

from __future__ import annotations

from typing import Any

from buildbot.www import config as www_config

HOME_ROUTE = "pipelines"  # the pipeline dashboard (www/config.py)
_PLACEHOLDER = " <!-- BUILDBOT_CONFIG_PLACEHOLDER -->"


def home_script(route: str) -> str:
    return (
        '<script>if (!location.hash || location.hash === "#" || location.hash === "#/") '
        f'{{ location.replace(location.pathname + location.search + "#/{route}"); }}</script>\n'
    )


def apply(route: str = HOME_ROUTE) -> None:
    """Open the web UI's root on `route` (idempotent)."""
    if getattr(www_config.IndexResource, "_namaskah_home", None):
        return
    original = www_config.IndexResource.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if _PLACEHOLDER in self.index_template:
            self.index_template = self.index_template.replace(_PLACEHOLDER, home_script(route) + _PLACEHOLDER, 1)

    www_config.IndexResource.__init__ = __init__
    www_config.IndexResource._namaskah_home = route
