"""Print the default run's figures that the README quotes, read from the run's own outputs.

The README's figures for the default run (`make run`, `config.yaml`) are copied from this
script's output, not typed: run it after a run and paste (or compare) the table.

    python scripts/readme_figures.py                      # results/ and the newest Snakemake log
    python scripts/readme_figures.py --results results --log .snakemake/log/X.snakemake.log

Each row names the file it was read from.  Rates carry their Wilson 95% intervals and sample
sizes as the evaluation wrote them.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

#: Snakemake's timestamp lines, e.g. "[Sat Dec  5 19:20:01 2026]"
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def run_time(log: Path) -> str | None:
    """Wall time of a finished Snakemake run: its first to its last timestamp line."""
    stamps = [
        datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
        for line in log.read_text().splitlines()
        if (m := STAMP.match(line.strip()))
    ]
    if len(stamps) < 2 or "steps (100%) done" not in log.read_text():
        return None
    seconds = int((stamps[-1] - stamps[0]).total_seconds())
    return f"{seconds // 60} min {seconds % 60} s"


def newest_finished_log(folder: Path) -> Path | None:
    """The newest Snakemake log of a whole run: every step finished, the simulation among
    them (a re-run of some rules, e.g. `--forcerun search`, is not the run's time)."""
    logs = sorted(folder.glob("*.snakemake.log"), reverse=True)
    for path in logs:
        text = path.read_text()
        if "steps (100%) done" in text and re.search(r"^(local)?rule simulate:", text, re.M):
            return path
    return None


def interval(values) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "[no interval]"


def value(x, ci=None, why: str | None = None) -> str:
    """A figure with its interval, or why there is none (too few test examples)."""
    if x is None:
        return f"not measured ({why})" if why else "not measured"
    return f"{x:.3f} {interval(ci)}" if ci is not None else f"{x:.3f}"


def headline_row(name: str, headline: dict, path: Path) -> tuple[str, str, str]:
    """The completeness in the case's headline selection, with its interval and n."""
    return (
        f"{name}, {headline['selection']}",
        f"{headline['completeness']:.3f} {interval(headline['completeness_ci95'])} "
        f"({headline['n_lenses']:,} lenses)",
        str(path),
    )


def figures(results: Path, log: Path | None) -> list[tuple[str, str, str]]:
    """(figure, value, source) rows of the default run's figures."""
    rows = []
    if log is not None:
        rows.append(("run time, `snakemake --cores 2`", run_time(log) or "unfinished", str(log)))
    path = results / "evaluation" / "metrics.json"
    if path.is_file():
        m = json.loads(path.read_text())
        op = m["operating_point"]
        rows += [
            headline_row("completeness", m["headline"], path),
            (
                "FPR on test at the validation threshold",
                f"{100 * op['fpr']:.2f}% [{100 * op['fpr_ci95'][0]:.2f}, "
                f"{100 * op['fpr_ci95'][1]:.2f}] (of {op['n_negative']:,})",
                str(path),
            ),
            ("AUROC", f"{m['auroc']:.3f} {interval(m['auroc_ci95'])}", str(path)),
            (
                "TPR at 1% FPR (test ROC)",
                value(
                    m.get("tpr_at_fpr_1pct"),
                    m.get("tpr_at_fpr_1pct_ci95"),
                    (m.get("tpr_at_fpr_reason") or {}).get("0.01"),
                ),
                str(path),
            ),
            ("TPR0 / TPR10", f"{value(m.get('tpr0'))} / {value(m.get('tpr10'))}", str(path)),
            (
                f"purity at prevalence {m['purity']['prevalence']:g}",
                f"{m['purity']['purity']:.3f} {interval(m['purity']['purity_ci95'])}",
                str(path),
            ),
            (
                "test cutouts (lenses / non-lenses)",
                f"{m['n_test']:,} ({m['n_positive']:,} / {m['n_negative']:,})",
                str(path),
            ),
        ]
    path = results / "search" / "summary.json"
    if path.is_file():
        s = json.loads(path.read_text())
        rows.append(
            (
                "search: objects scored, candidates, failures",
                f"{s['rows']:,}, {s['candidates']:,}, {s['failures']}",
                str(path),
            )
        )
    path = results / "skymaps" / "injection_recovery.json"
    if path.is_file():
        inj = json.loads(path.read_text())
        fp = inj["false_positive_rate"]
        rows += [
            headline_row("injection-recovery completeness", inj["headline"], path),
            (
                "tiles' false-positive rate",
                f"{100 * fp['tiles']['rate']:.2f}% ({fp['tiles']['k']} of {fp['tiles']['n']:,})",
                str(path),
            ),
        ]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="the run's results folder")
    p.add_argument("--log", help="its Snakemake log (default: the newest finished one)")
    args = p.parse_args(argv)
    log = Path(args.log) if args.log else newest_finished_log(Path(".snakemake/log"))
    rows = figures(Path(args.results), log)
    if not rows:
        print(f"no run outputs under {args.results}: run `make run` first")
        return 1
    print("| figure | value | read from |\n|---|---|---|")
    for name, value, source in rows:
        print(f"| {name} | {value} | `{source}` |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
