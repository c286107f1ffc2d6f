"""SCoRe-RL: short-horizon GRPO from verified prefixes with the key-step reward (see docs/rl.md)."""
