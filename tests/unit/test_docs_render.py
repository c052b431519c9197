"""The docs cannot drift: generated tables equal what scripts/render_docs.py makes from the results now,
every relative link resolves, every setting and alert is documented, and no work diary creeps in."""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from stream_tagger.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
OPERATIONS = ROOT / "docs" / "operations.md"
# STREAM_TAGGER_* variables that are not settings of the package (read by the test suite).
NOT_SETTINGS = {"STREAM_TAGGER_TEST_BOOTSTRAP"}

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _render_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "scripts" / "render_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and code spans, where links are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in _FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_generated_blocks_equal_what_the_results_render_now() -> None:
    stale = []
    for relative, (committed, rendered) in _render_docs().render(ROOT).items():
        if committed != rendered:
            diff = difflib.unified_diff(
                committed.splitlines(),
                rendered.splitlines(),
                f"{relative} (committed)",
                "rendered",
                n=1,
                lineterm="",
            )
            stale.append("\n".join(list(diff)[:40]))
    assert not stale, "run .venv/bin/python scripts/render_docs.py and commit the result:\n" + "\n".join(
        stale
    )


def test_every_generated_block_is_in_a_doc() -> None:
    module = _render_docs()
    text = "".join((ROOT / path).read_text(encoding="utf-8") for path in module.FILES)
    for name in module.RENDERERS:
        assert f"<!-- BEGIN GENERATED {name}" in text and f"<!-- END GENERATED {name} -->" in text, name


def test_an_unknown_generated_block_is_an_error() -> None:
    text = "<!-- BEGIN GENERATED nope: x -->\n<!-- END GENERATED nope -->\n"
    with pytest.raises(KeyError, match="nope"):
        _render_docs().render_text(text, ROOT)


def test_rendering_is_idempotent_and_keeps_the_hand_written_text() -> None:
    module = _render_docs()
    text = "before\n<!-- BEGIN GENERATED metrics: x -->\nSTALE-TEXT\n<!-- END GENERATED metrics -->\nafter\n"
    once = module.render_text(text, ROOT)
    assert once.startswith("before\n<!-- BEGIN GENERATED metrics: x -->\n| metric |")
    assert once.endswith("<!-- END GENERATED metrics -->\nafter\n")
    assert "STALE-TEXT" not in once
    assert module.render_text(once, ROOT) == once


def test_missing_results_render_a_line_instead_of_failing(tmp_path: Path) -> None:
    module = _render_docs()
    for render in (
        module.render_bench_run,
        module.render_bench_inference,
        module.render_bench_instructions,
        module.render_model_quality,
        module.render_served_model,
    ):
        lines = render(tmp_path)
        assert len(lines) == 1 and lines[0].startswith("No "), lines


def test_a_run_without_sweeps_targets_or_loads_renders_what_it_has(tmp_path: Path) -> None:
    """A run of only some pipelines (``run.py --only``) has no targets and no offered loads."""
    results = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text(encoding="utf-8"))
    results["sweeps"].pop("batch_max_size", None)
    results.pop("targets")
    for entry in results["pipelines"].values():
        entry.pop("loads")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "report.py", tmp_path / "benchmarks")
    (tmp_path / "benchmarks" / "results" / "latest.json").write_text(json.dumps(results), encoding="utf-8")
    module = _render_docs()
    run, headline = module.render_bench_run(tmp_path), module.render_bench_headline(tmp_path)
    assert any(line.startswith("| stream-tagger worker |") for line in run)
    assert any(line.startswith("| stream-tagger worker |") for line in headline)
    assert not any("target" in line or "latency" in line for line in [*run, *headline])


def test_instruction_counts_render_each_step_and_the_hot_path_threads_sum(tmp_path: Path) -> None:
    counts = {"prepare": 10.0, "featurise": 60.0, "graph": 40.0, "finish": 30.0}
    data = {
        "steps": {step: f"the {step} step" for step in counts},
        "hot_path_steps": ["prepare", "finish"],
        "events_per_batch_size": {"4096": 8192, "256": 8192},
        "instructions_per_event": {"4096": counts, "256": {k: 2 * v for k, v in counts.items()}},
    }
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "instructions.json").write_text(json.dumps(data), encoding="utf-8")
    lines = _render_docs().render_bench_instructions(tmp_path)
    assert "(8,192 in batches of 4,096, 8,192 in batches of 256)" in lines[0]
    assert "| instructions per event | batch 4,096 | batch 256 |" in lines
    assert "| the graph step | 40 | 80 |" in lines
    assert "| **hot-path thread's Python** (prepare + finish) | 40 | 80 |" in lines
    assert "| **all steps** | 140 | 280 |" in lines


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_setting_has_a_row_in_the_operations_settings_table() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    missing = [
        f"STREAM_TAGGER_{name.upper()}"
        for name in Settings.model_fields
        if f"| `STREAM_TAGGER_{name.upper()}` |" not in text
    ]
    assert not missing, f"document these settings in docs/operations.md#settings: {', '.join(missing)}"


def test_every_variable_the_docs_name_is_a_setting() -> None:
    known = {f"STREAM_TAGGER_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    unknown = {
        f"{doc.relative_to(ROOT)}: {name}"
        for doc in DOCS
        for name in re.findall(r"STREAM_TAGGER_[A-Z0-9_]*[A-Z0-9]", doc.read_text(encoding="utf-8"))
        if name not in known
    }
    assert not unknown, f"not settings of stream_tagger/settings.py: {sorted(unknown)}"


def test_every_alert_has_a_runbook_entry() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    alerts = [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    headings = set(re.findall(r"^### (\S+)$", OPERATIONS.read_text(encoding="utf-8"), re.MULTILINE))
    missing = [alert for alert in alerts if alert not in headings]
    assert alerts and not missing, (
        f"add a runbook entry (### {missing[0] if missing else ''}) to docs/operations.md"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_speak_about_the_product_not_the_work(doc: Path) -> None:
    diary = re.compile(r"session [0-9]|round [0-9]|[.]tmp/|[.][.]/shared", re.IGNORECASE)
    found = diary.findall(doc.read_text(encoding="utf-8"))
    assert not found, f"{doc.relative_to(ROOT)}: {found}"
