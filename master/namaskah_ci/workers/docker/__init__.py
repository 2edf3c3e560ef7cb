"""Docker mode: a container per job build, its service containers, its cache volume, the containers watched."""
