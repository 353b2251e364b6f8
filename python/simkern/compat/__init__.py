"""Drop-in shims with other libraries' APIs over simkern's kernels (``import simkern.compat.hnswlib as hnswlib``)."""
