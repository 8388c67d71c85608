"""Network-namespace labs: real test hosts for tests and for learning."""
