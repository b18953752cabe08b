"""Ground-level modules every layer may import (errors, atomic writes, the Triton gate).

Nothing here imports another accel package, so `cli/`, `recipes/`, `trainers/`, `decoding/`,
`models/` and `data/` can all depend on it without creating a cycle (docs/architecture.md).
"""
