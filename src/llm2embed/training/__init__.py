"""Training stages of the LLM2Vec recipe: MNTP (``mntp``) and, later, SimCSE / supervised contrastive."""
