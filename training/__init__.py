"""Training: synthetic RAW pairs from photos, the one-step trainer, the flow teacher and its distillation."""
