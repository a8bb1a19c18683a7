"""File formats: the .tfci bitstream container and image reading/writing."""
