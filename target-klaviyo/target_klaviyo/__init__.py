"""Singer target for Klaviyo's bulk APIs."""
