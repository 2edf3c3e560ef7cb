"""How one job runs, whatever builds it: its commands and `job.json`, its reuse key's runtime and record,
which worker takes it, its builder, the host's interpreters."""
