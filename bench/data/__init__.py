"""Datasets: two-domain image folders, the named selfie2anime folder, and synthetic toyfaces."""
