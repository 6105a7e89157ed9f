"""apply package."""
