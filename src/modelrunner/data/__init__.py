"""Datasets: their sources, the versions found in them, syncing, and the local cache of versions."""
