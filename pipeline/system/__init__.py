"""Config to the system's two halves and their joint: the encoder and the analog block built from
a config, and the encoder retrained through the block."""
