"""Training: input pipeline and augmentation, schedules, checkpoints, the fit, ensembles, sweeps, Ray."""
