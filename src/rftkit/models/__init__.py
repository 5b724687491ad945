"""Policy loading (transformers + peft) and the tiny byte-level model kit."""
