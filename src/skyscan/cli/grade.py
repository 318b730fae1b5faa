"""``skyscan grade``: a local web page to grade a search's candidates by eye (0-3)."""

from __future__ import annotations

import argparse

from skyscan.core.command import CommandParser

PROG = "skyscan grade"


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = CommandParser(
        prog=PROG,
        description=(
            "Serve a page (http://HOST:PORT) where graders give each candidate of a search "
            "a grade: 0 not one (e.g. not a lens), 1 possible, 2 probable, 3 definite, by "
            "keyboard. Grades go to an SQLite database; RESULTS/grades.parquet, "
            "consensus.parquet and grader_stats.json are rewritten after every grade. "
            "--export writes them and graded_stamps.parquet (training examples from the "
            "consensus) and exits."
        ),
    )
    p.add_argument("results", help="search output folder (candidates.parquet, summary.json)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default local)")
    p.add_argument(
        "--sims",
        help="dataset folder whose test split provides simulated stamps mixed in unannounced",
    )
    p.add_argument(
        "--mix",
        type=float,
        default=0.07,
        help="fraction of the stamps shown that are simulated (default 0.07)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated stamps' draw")
    p.add_argument("--db", help="grades database (default RESULTS/grades.sqlite)")
    p.add_argument("--tiles", help="tile folder (replaces summary.json's 'tiles')")
    p.add_argument("--pattern", help="tile file pattern (replaces summary.json's 'pattern')")
    p.add_argument("--model", help="model card (replaces summary.json's 'card')")
    p.add_argument("--per-page", type=int, default=20, help="candidates per page (default 20)")
    p.add_argument("--export", action="store_true", help="write the exports and exit (no web page)")
    return p


def main(argv=None) -> int:
    """Run the command."""
    from skyscan.core.command import run_command

    return run_command(PROG, parser, _run, argv)


def _run(args) -> int:
    import json
    from pathlib import Path

    from skyscan.core.errors import UsageError
    from skyscan.vet.exports import export_grades, export_training_stamps
    from skyscan.vet.session import GradingSession, resolve_sources
    from skyscan.vet.store import GradeStore

    if args.per_page < 1:
        raise UsageError(f"--per-page {args.per_page} must be at least 1", key="per_page")
    sources = resolve_sources(args.results, args.tiles, args.pattern, args.model)
    store = GradeStore(args.db or Path(args.results) / "grades.sqlite")
    session = GradingSession(sources, store, sims=args.sims, mix=args.mix, seed=args.seed)
    if args.export:
        counts = export_grades(store, sources.candidates, sources.results)
        counts["training_stamps"] = export_training_stamps(session)
        print(json.dumps(counts, indent=1))
        return 0
    from skyscan.vet.app import make_app, serve

    n_sim = sum(it.simulated for it in session.items)
    print(f"grading {len(session.items) - n_sim} candidates at http://{args.host}:{args.port}/")
    if n_sim:
        print(f"({n_sim} simulated stamps mixed in; see /stats)")
    serve(make_app(session, per_page=args.per_page), args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
