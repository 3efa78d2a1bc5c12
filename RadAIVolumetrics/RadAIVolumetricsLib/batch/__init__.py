"""Cohort batch processing: discovery and fingerprints (:mod:`.studies`), the per-study pipeline
(:mod:`.pipeline`) and the Dask runner (:mod:`.runner`)."""
