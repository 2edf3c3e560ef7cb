"""Deploy and rollback steps: the gate, Render's API, starting once, verifying, rolling back,
notifying, and the deploy history they read."""
