"""Both papers' claims re-measured on the trained networks and the full test sets.

:mod:`~shiftsim.studies.evaluate` streams a test set through a bit-accurate network run;
:mod:`~shiftsim.studies.shiftcnn` and :mod:`~shiftsim.studies.miyashita` build the two papers'
tables; :mod:`~shiftsim.studies.weights` measures weight SQNR on EfficientNet-Lite0's ImageNet
weights. ``python -m shiftsim.studies --help`` regenerates each table with one command.
"""

from shiftsim.studies.evaluate import WARN_RATE, Evaluation, calibration_images, evaluate

__all__ = ["WARN_RATE", "Evaluation", "calibration_images", "evaluate"]
