"""Learning-trajectory transfer: trajectories on disk, synced gradients, matching, GMT/FGMT."""
