"""Singer tap for the Swap Commerce Returns API."""
