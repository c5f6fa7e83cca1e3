"""The host side: stdlib-only code sent as source to each host (any Python 3.8+), never imported by
the deploying side except by tests."""
