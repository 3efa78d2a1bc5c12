"""Longitudinal lesion tracking: timepoints, registration, matching, response (RECIST 1.1 and volumetric)."""
