"""Built-in models: a small CNN trained on scikit-learn's 8x8 digits."""

from shiftsim.models.digits import digits_network, digits_test_split

__all__ = ["digits_network", "digits_test_split"]
