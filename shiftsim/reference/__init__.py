"""Oracles: the golden model on Python ints and the float64 reference.

They import only :mod:`shiftsim.formats` and :mod:`shiftsim.layers`: an oracle shares no code
with what it checks.
"""
