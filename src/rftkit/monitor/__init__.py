"""Monitoring: live progress, metrics sinks, reward-hacking monitors."""
