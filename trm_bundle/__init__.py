"""The model bundle contract shared by the trainer and the server (docs/BUNDLE.md); no torch here.

- `manifest`: file and step names, the manifest's types (with the padding-trim rule), parsing and loading
- `checksums`: the sha256 of bundle files, and their verification
- `writer`: writing a complete bundle folder atomically
- `probabilities`: how a step's logits become the probabilities an answer reports
- `spoken_numbers`: a sequence bundle's check that the numbers an answer writes are the ones its words say
- `spoken_words`: a sequence bundle's reading of a speech recogniser's text as the spoken words its model learnt
- `offline`: ONNX Runtime's telemetry switched off in the product's processes
"""


class BundleError(Exception):
    """A bundle folder cannot be served: corrupt, incomplete or incompatible."""
