"""miniature package."""
