"""The model library: towers, fusion, losses. Imports nothing from the trainer, the CLI or
the preprocessing, so it can be used on its own (like open_clip beside open_clip_train)."""
