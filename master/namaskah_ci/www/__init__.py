"""The web UI's configuration: plugins, dashboards, change hooks, /metrics."""
