"""stream-tagger: a Faust worker that tags content events with an ONNX-exported scikit-learn model."""

__version__ = "0.1.0"
