"""What several recipes share: not a recipe itself (it is not in the registry)."""
