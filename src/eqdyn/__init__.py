"""eqdyn: training dynamics of learning 3D-rotational equivariance, reproduced as a Snakemake pipeline."""

__version__ = "0.1.0"
