"""Inference speed of the served model, split into featurise / ONNX / total, against the alternatives.

    .venv/bin/python benchmarks/bench_inference.py [--model models/current] [--seconds 1.0]
        [--against models/<older version>]

Compared, on the real posts of data/dataset.csv, one thread each:
- ours: compiled featuriser (n-grams and keyword hits) + ONNX TF-IDF/linear graph (``Predictor.predict``),
  and its two halves;
- scikit-learn ``predict_proba`` of the same fitted pipeline (``pipeline.joblib``);
- a plain skl2onnx graph of word TF-IDF (1-2-grams) + logistic regression, i.e. ONNX string operators.
Batch 1: per-call latency p50/p99. Batches of 64 and 512: posts per second.
With ``--against``, another model folder's ``Predictor.predict`` and featuriser in the same rounds, and
both models' ``Predictor.predict`` head to head: alternating passes over the same batches, the ratio
of their times per pass (a new model is "no slower" only against the old one under the same load).
Then ``Predictor.predict`` and the featuriser alone on batches of 64 from 1 and from 2 threads at once
(the worker's inference pool): both release the GIL, so 2 threads should approach 2x on 2 free cores.
Writes benchmarks/results/inference.json and inference.png. Timings on a shared machine are noisy:
each figure is the median of repeated runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import joblib
import matplotlib
import numpy as np
import onnxruntime as ort

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from skl2onnx import to_onnx
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from stream_tagger.app import tune_malloc
from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.predictor import Predictor
from stream_tagger.model.versions import PIPELINE_FILE, resolve

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BATCHES = (64, 512)
THREADS = (1, 2)
PARALLEL_BATCH = 64


def _latencies(fn: Callable[[object], object], inputs: list[object], seconds: float) -> np.ndarray:
    """Per-call seconds of fn(one-post input), cycling through the posts for about ``seconds``."""
    out = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline or len(out) < 200:
        t0 = time.perf_counter()
        fn(inputs[i % len(inputs)])
        out.append(time.perf_counter() - t0)
        i += 1
    return np.array(out)


def _throughput(fn: Callable[[object], object], batches: list[object], size: int, seconds: float) -> float:
    """Posts per second at this batch size (median over batches)."""
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        for b in batches:
            t0 = time.perf_counter()
            fn(b)
            rates.append(size / (time.perf_counter() - t0))
    return float(np.median(rates))


def _parallel(
    fn: Callable[[object], object], batches: list[object], size: int, threads: int, seconds: float
) -> float:
    """Posts per second of ``threads`` threads each calling fn on batches for about ``seconds``."""
    done = [0] * threads
    start = threading.Barrier(threads + 1)

    def work(k: int) -> None:
        start.wait()
        deadline = time.perf_counter() + seconds
        i = k
        while time.perf_counter() < deadline:
            fn(batches[i % len(batches)])
            done[k] += size
            i += 1

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in pool:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def _paired(
    fns: tuple[Callable[[list[str]], object], Callable[[list[str]], object]],
    batches: list[list[str]],
    slices: int,
) -> dict[str, float]:
    """Two models' time per post on the same batches, alternating pass by pass (A B B A A B ...), so
    load from elsewhere hits both alike; per-pass ratios B / A, median and quartiles."""
    posts = sum(len(b) for b in batches)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(slices):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            for b in batches:
                fns[k](b)
            times[k].append((time.perf_counter() - t0) / posts * 1e6)
    ratio = np.array(times[1]) / np.array(times[0])
    return {
        "model_us_per_post": float(np.median(times[0])),
        "against_us_per_post": float(np.median(times[1])),
        "against_over_model_median": float(np.median(ratio)),
        "against_over_model_q1": float(np.percentile(ratio, 25)),
        "against_over_model_q3": float(np.percentile(ratio, 75)),
        "passes": slices,
    }


def _batches(texts: list[str], size: int) -> list[list[str]]:
    """Consecutive batches of real posts, repeating the posts when there are fewer than ``size``."""
    pool = texts * (size // len(texts) + 1)
    return [pool[i : i + size] for i in range(0, max(len(texts) - size, 0) + 1, size)]


def _same(batch: list[str]) -> list[str]:
    return batch


def _word_tfidf_onnx(texts: list[str], y: list[str]) -> Callable[[list[str]], object]:
    """The conversion FINDINGS.md measured: skl2onnx's string-operator TF-IDF graph."""
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(C=10, max_iter=1000)).fit(
        texts, y
    )
    options = {
        id(pipe.steps[0][1]): {"locale": "C", "tokenexp": r"\b\w\w+\b"},
        id(pipe.steps[1][1]): {"zipmap": False},
    }
    onx = to_onnx(pipe, np.array(texts[:1]), options=options, target_opset=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onx.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda batch: sess.run(None, {"X": np.array(batch)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "current")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "dataset.csv")
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median is reported)")
    parser.add_argument("--against", type=Path, help="another model folder, timed in the same rounds")
    parser.add_argument(
        "--passes", type=int, default=40, help="alternating passes per batch size (--against)"
    )
    args = parser.parse_args()
    tune_malloc()  # the allocator as a worker runs it

    version_dir = resolve(args.model)
    predictor = Predictor(version_dir)
    pipeline = joblib.load(version_dir / PIPELINE_FILE)
    data = load_dataset([args.data], min_per_class=0)
    texts = data.texts

    text_contenders: dict[str, Callable[[list[str]], object]] = {
        "ours: total (Predictor.predict)": predictor.predict,
        "scikit-learn predict_proba": pipeline.predict_proba,
        "skl2onnx word TF-IDF + LR": _word_tfidf_onnx(texts, list(data.tags)),
    }
    contenders: dict[str, tuple[Callable[[object], object], Callable[[list[str]], object]]] = {
        "ours: featurise (compiled)": (predictor.featurize, _same),
        "ours: ONNX graph only (features made beforehand)": (predictor.run_graph, predictor.featurize),
        **{name: (fn, _same) for name, fn in text_contenders.items()},
    }
    against = Predictor(resolve(args.against)) if args.against else None
    if against is not None:
        contenders[f"{against.version}: total"] = (against.predict, _same)
        contenders[f"{against.version}: featurise"] = (against.featurize, _same)
    head_to_head = {}
    if against is not None:
        for size in (1, *BATCHES):
            batches = _batches(texts, size)[: max(1, 512 // size)]
            head_to_head[f"batch{size}"] = _paired((predictor.predict, against.predict), batches, args.passes)
    # Rounds interleave the contenders, so a burst of load from elsewhere hits them all alike;
    # each figure is the median over rounds.
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, (fn, prepare) in contenders.items():
            lat = _latencies(fn, [prepare([t]) for t in texts], args.seconds)
            row = {
                "batch1_p50_ms": float(np.percentile(lat, 50) * 1e3),
                "batch1_p99_ms": float(np.percentile(lat, 99) * 1e3),
            }
            for b in BATCHES:
                batches = [prepare(x) for x in _batches(texts, b)]
                row[f"batch{b}_posts_per_s"] = _throughput(fn, batches, b, args.seconds)
            rounds[name].append(row)
    results = {
        name: {key: float(np.median([r[key] for r in rows])) for key in rows[0]}
        for name, rows in rounds.items()
    }
    parallel_fns = {"Predictor.predict": predictor.predict, "featurise": predictor.featurize}
    parallel_batches = _batches(texts, PARALLEL_BATCH)
    parallel_rounds: dict[str, list[float]] = {
        f"{name}, {n} thread{'s' * (n > 1)}": [] for name in parallel_fns for n in THREADS
    }
    for _ in range(args.rounds):
        for name, fn in parallel_fns.items():
            for n in THREADS:
                rate = _parallel(fn, parallel_batches, PARALLEL_BATCH, n, args.seconds * 2)
                parallel_rounds[f"{name}, {n} thread{'s' * (n > 1)}"].append(rate)
    parallel = {name: float(np.median(rates)) for name, rates in parallel_rounds.items()}

    header = f"{'':34s} {'b1 p50 ms':>10s} {'b1 p99 ms':>10s}" + "".join(
        f" {f'b{b} posts/s':>13s}" for b in BATCHES
    )
    print(f"model {predictor.version}, {len(texts)} posts, onnxruntime {ort.__version__}, 1 thread")
    print(header)
    for name, r in results.items():
        cells = "".join(f" {r[f'batch{b}_posts_per_s']:13,.0f}" for b in BATCHES)
        print(f"{name:34s} {r['batch1_p50_ms']:10.3f} {r['batch1_p99_ms']:10.3f}{cells}")
    for name, h in head_to_head.items():
        print(
            f"{name}: {h['model_us_per_post']:.1f} us/post,"
            f" {against.version} {h['against_us_per_post']:.1f};"
            f" ratio {h['against_over_model_median']:.3f}"
            f" (quartiles {h['against_over_model_q1']:.3f}-{h['against_over_model_q3']:.3f})"
        )
    print(f"batches of {PARALLEL_BATCH}, threads calling at once:")
    for name, rate in parallel.items():
        print(f"  {name:32s} {rate:13,.0f} posts/s")

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_version": predictor.version,
        "against_version": against.version if against is not None else None,
        # Predictor.predict of both, alternating passes over the same batches (ratio > 1: this model faster).
        "head_to_head": head_to_head,
        "posts": len(texts),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "load_average": os.getloadavg(),
        "rounds": args.rounds,
        "results": results,
        "parallel_batch": PARALLEL_BATCH,
        "parallel_posts_per_s": parallel,
    }
    (RESULTS / "inference.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    names = list(results)
    axes[0].barh(names, [results[n]["batch1_p50_ms"] for n in names], color="tab:blue")
    axes[0].set_xlabel("batch of 1: p50 latency (ms, lower is better)")
    width = 0.4
    for k, b in enumerate(BATCHES):
        axes[1].barh(
            np.arange(len(names)) + (k - 0.5) * width,
            [results[n][f"batch{b}_posts_per_s"] for n in names],
            height=width,
            label=f"batch {b}",
        )
    axes[1].set_yticks(range(len(names)), [""] * len(names))
    axes[1].set_xlabel("posts per second (higher is better)")
    axes[1].legend()
    axes[2].barh(list(parallel), list(parallel.values()), color="tab:green")
    axes[2].invert_yaxis()
    axes[2].set_xlabel(f"batches of {PARALLEL_BATCH} from 1 or 2 threads: posts per second")
    fig.suptitle(f"inference, model {predictor.version}, one thread unless said")
    fig.tight_layout()
    fig.savefig(RESULTS / "inference.png", dpi=100)
    print(f"wrote {RESULTS / 'inference.json'} and inference.png")


if __name__ == "__main__":
    main()
