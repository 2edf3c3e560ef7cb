"""The web UI: plugins (waterfall, console, grid, badges) and the reports dashboard."""

from __future__ import annotations

from namaskah_ci.reports_app import ReportsApp
from namaskah_ci.settings import Settings


def make_www(settings: Settings) -> dict:
    """A fresh `c['www']` dict."""
    return {
        "port": f"tcp:{settings.www.port}:interface={settings.www.bind}",
        "plugins": {
            "waterfall_view": {},
            "console_view": {},
            "grid_view": {},
            "badges": {},
            "wsgi_dashboards": [
                {
                    "name": "reports",
                    "caption": "Reports",
                    "app": ReportsApp(str(settings.basedir / "reports")),
                    "order": 20,
                    "icon": "file-text",
                }
            ],
        },
    }
