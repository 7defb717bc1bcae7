"""Data for the trainer: dataset loaders, Sudoku tiers and augmentations, and the text tokenizer."""
