"""HTTP routes: `health` (liveness, readiness, diagnostics) and `verifications` (the SMS API)."""
