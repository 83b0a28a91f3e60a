"""numba kernels: plain functions over arrays. Nothing here imports the rest of `sensing`."""
