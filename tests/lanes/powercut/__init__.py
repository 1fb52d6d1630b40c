"""Power-cut simulation for the D2 gate: `lossyfs`, a FUSE layer that forgets unsynced writes."""
