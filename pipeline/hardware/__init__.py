"""Programmed chips in the pipeline: their artifacts and metrics, the robustness map, and the
SPICE sign-off."""
