"""Tracks: one spec per track, each with its own module(s)."""
