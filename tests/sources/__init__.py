"""Tests of edgecam.sources (package so helpers import relatively)."""
