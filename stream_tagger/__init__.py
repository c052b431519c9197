"""stream-tagger: a Faust worker that tags content events with an ONNX-exported scikit-learn model.

The public API is loaded lazily (PEP 562): ``import stream_tagger`` stays cheap, and the worker's
own ``from stream_tagger.x import y`` does not pay for scikit-learn, onnxruntime or rich that it may
not need. Each name is imported from its module on first use and then cached here.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # configuration and wire format
    "Settings": "stream_tagger.settings",
    "APPROVED_TAGS": "stream_tagger.settings",
    "RawContent": "stream_tagger.events",
    "TaggedContent": "stream_tagger.events",
    "ReviewRequest": "stream_tagger.events",
    "DeadLetter": "stream_tagger.events",
    "Feedback": "stream_tagger.events",
    "ShadowDisagreement": "stream_tagger.events",
    "TagScore": "stream_tagger.events",
    # training, evaluation, promotion
    "train": "stream_tagger.model.train",
    "TrainConfig": "stream_tagger.model.train",
    "evaluate_model": "stream_tagger.model.evaluate",
    "load_dataset": "stream_tagger.model.dataset",
    "Dataset": "stream_tagger.model.dataset",
    "DatasetError": "stream_tagger.model.dataset",
    "compare_models": "stream_tagger.online.promotion_gate",
    "Comparison": "stream_tagger.online.promotion_gate",
    "set_current": "stream_tagger.model.versions",
    "export_feedback": "stream_tagger.online.feedback_export",
    "ExportReport": "stream_tagger.online.feedback_export",
    "ExportError": "stream_tagger.online.feedback_export",
    # serving the model outside the stream
    "Predictor": "stream_tagger.model.predictor",
    "ModelLoadError": "stream_tagger.model.versions",
    "predict_file": "stream_tagger.tools.predict",
    "predict_texts": "stream_tagger.tools.predict",
    "PostPrediction": "stream_tagger.tools.predict",
    "PredictSummary": "stream_tagger.tools.predict",
    # files of posts
    "read_posts": "stream_tagger.tools.sources",
    "dataset_events": "stream_tagger.tools.sources",
    "RowError": "stream_tagger.tools.sources",
    "SourceError": "stream_tagger.tools.sources",
    # broker, producing, following
    "EmbeddedBroker": "stream_tagger.kafka.embedded_broker",
    "load_file": "stream_tagger.tools.produce",
    "produce_events": "stream_tagger.tools.produce",
    "DeliveryReport": "stream_tagger.tools.produce",
    "BrokerUnreachable": "stream_tagger.tools.produce",
    "follow": "stream_tagger.tools.tail",
    "Record": "stream_tagger.tools.tail",
    # running the worker in this process
    "run_worker": "stream_tagger.service",
    "WorkerFailed": "stream_tagger.service",
    # the demo
    "run_demo": "stream_tagger.tools.demo",
    "DemoSummary": "stream_tagger.tools.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stream_tagger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
