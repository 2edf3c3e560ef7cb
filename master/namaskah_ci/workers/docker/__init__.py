"""Docker mode: one container per job build, its service containers, its cache volume, the containers watched while it runs."""
