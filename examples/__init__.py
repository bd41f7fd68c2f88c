"""Example apps for the generic scenarios (not installed; run them from the repository root)."""
