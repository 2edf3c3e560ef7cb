"""Workers: local workers in the master (`local`) and Docker latent workers with per-build services (`docker/`)."""
