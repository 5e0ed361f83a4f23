"""emovision: speech emotion recognition with ImageNet image classifiers on spectrograms."""

__version__ = "0.1.0"
