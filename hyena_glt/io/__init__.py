"""Sequence input, labelled datasets and atomic output writers."""
