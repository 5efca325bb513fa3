"""Rollout backends: turn prompts into sampled completions (`hf`: transformers `generate`)."""
