"""tfcodec: learned image compression in TensorFlow/Keras."""

__version__ = "0.1.0"
