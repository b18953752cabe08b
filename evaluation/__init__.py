"""`accel eval`: lm-evaluation-harness tasks decoded by accel's methods, cost figures beside the metrics.

Above `recipes/` (it loads any TARGET with `accel.recipes.targets`) and below `cli/`. lm-eval is an
optional dependency (`accel[eval]`): only `tasks`, `harness` and `run` import it, at their top, and
nothing in the start-up set imports them.
"""
