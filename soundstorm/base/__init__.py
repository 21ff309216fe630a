"""The base every layer may import: the error family, device and seeding, shared value checks."""
