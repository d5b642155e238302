"""Foundation: frames, events, paths, files, config base, metrics, local HTTP. Imports no stage."""
