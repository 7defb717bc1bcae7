"""Data for the trainer: reading data files, text and grid datasets, hold-outs, Sudoku augmentations, and
the text tokenizer."""
