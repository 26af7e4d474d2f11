"""Baseline methods: one file each, registered by name in benchmark.registry."""
