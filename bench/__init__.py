"""i2i-bench: train, evaluate and compare unpaired image-to-image translation methods."""

__version__ = "0.1.0"
