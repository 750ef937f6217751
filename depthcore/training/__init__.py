"""Training: resolved settings per phase, what a run depends on, the loop, the phases of a run, checkpoints."""
