"""Reusable Keras layers: convolutions, GDN, masked convolutions."""

from tfcodec.layers.conv import conv, deconv
from tfcodec.layers.gdn import gdn, igdn

__all__ = ["conv", "deconv", "gdn", "igdn"]
