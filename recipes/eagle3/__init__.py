"""EAGLE-3: a one-layer draft model over three of the target's hidden states, trained with the
training-time test, decoded as a tree through the shared verifier, exported for vLLM/SGLang."""
