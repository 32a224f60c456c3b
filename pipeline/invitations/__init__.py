"""Invitation tokens (derived, never stored) and the page that accepts them."""
