"""tfcodec: learned image compression in TensorFlow/Keras."""

__version__ = "0.4.0"
