"""Training recipes: full fine-tune, LoRA, PPO, reward model; plus the evaluator and the demo-family builder."""
