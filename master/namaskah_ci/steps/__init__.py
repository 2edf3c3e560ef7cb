"""Custom build steps: fan-out, per-build services, reports, secret-gated commands."""
