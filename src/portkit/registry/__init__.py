"""Port facts: ranges, service names, notes. Pure."""
