"""The master's builders: `pipeline`, one per job, deploy and rollback per environment, and their factories."""
