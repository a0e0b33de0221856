"""benchmarks/report.py keeps what a benchmark printed that belongs on docs/benchmarks.md."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["report"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_tables_keep_their_captions_and_summaries_not_progress():
    printed = "\n".join(
        [
            "trained 16x4 in 3 s",
            "",
            "Medians over 2 fields",
            "",
            "| a | b |",
            "|---|---|",
            "| 1 | 2 |",
            "| c |",
            "|---|",
            "| 3 |",
            "progress 50%",
            "Spearman, predicted vs realised: 0.6",
            "12 s in all",
        ]
    )
    kept = _report().tables_of(printed).splitlines()
    assert "trained 16x4 in 3 s" not in kept and "progress 50%" not in kept
    assert kept[:3] == ["Medians over 2 fields", "", "| a | b |"]
    assert kept[kept.index("| 1 | 2 |") + 1] == ""  # two tables printed back to back stay two tables
    assert "Spearman, predicted vs realised: 0.6" in kept and kept[-1] == "12 s in all"


def test_the_readme_table_is_replaced_between_its_markers(tmp_path):
    report = _report()
    (tmp_path / "depth.md").write_text("## Depth\n\nintro\n\n| held-out field | x4 |\n|---|---|\n| relief | 0.9 |\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{report.README_BEGIN}\nold\n{report.README_END}\n\nafter\n")
    report.readme_table(tmp_path, readme)
    assert readme.read_text() == (
        f"# title\n\n{report.README_BEGIN}\n| held-out field | x4 |\n|---|---|\n| relief | 0.9 |\n{report.README_END}\n\nafter\n"
    )
