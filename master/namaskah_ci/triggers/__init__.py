"""What starts a build: the git poller, schedulers, the first run and the admins' force forms (re-run, approve)."""
