"""Dialogue-summarization workbench: compare prompting, full fine-tuning, LoRA and PPO side by side."""

__version__ = "0.1.0"
