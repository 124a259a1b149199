"""Shared test helpers: synthetic media tracks and their analysis."""
