"""Every numba-compiled function of shiftsim, and nothing else.

Kernels take plain ints and int64 arrays, never validate and never raise: the public
wrappers in :mod:`shiftsim.datapath` check everything first.
"""
