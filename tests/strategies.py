"""hypothesis strategies shared by the test modules."""
