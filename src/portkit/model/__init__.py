"""Frozen, slotted dataclasses and enums that every result is made of. Standard library only."""
