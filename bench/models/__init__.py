"""The shared backbones (one architecture for every method), above the kernel only."""
