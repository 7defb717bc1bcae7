"""Code dictation: spoken code -> written code. The verbalizer, the standard-library corpus, the anchor."""
