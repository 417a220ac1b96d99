"""Neural network modules shared by the notebooks (a small GPT; mixture-of-experts layers)."""
