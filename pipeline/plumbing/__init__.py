"""Plumbing: every artifact path, atomic file I/O, user-facing errors, the config schema
and its composition. Imports nothing else of the project."""
