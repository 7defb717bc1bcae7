"""The model bundle contract shared by the trainer and the server (docs/BUNDLE.md); no torch here."""
