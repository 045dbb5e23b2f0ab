"""Rotations of SO(3), the octahedral group, and how they act on molecules, per-atom vectors and voxel grids."""
