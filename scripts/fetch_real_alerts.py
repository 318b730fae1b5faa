"""Fetch the real public ZTF alerts the transient case is checked on, at set-up (never at
run time): fink-science's source distribution on the package registry holds real ZTF alert
packets as Parquet (``fink_science/data/alerts/``), with ZTF's own real/bogus scores (rb,
drb) beside the three cutouts.

Only ``CTAO_blazar_datatest_v20-12-24.parquet`` (414 alerts of 303 objects) is extracted:
the development set of the real-data check (``scripts/real_alerts_check.py``).  The folder's
other alert files are left alone on purpose (kept for an independent check).

    .venv/bin/python scripts/fetch_real_alerts.py            # -> data/real/ztf/

Idempotent: a file already there with the expected SHA-256 is kept.  Exit 1 with the reason
when the registry cannot be reached or the file differs.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "fink-science==7.4.0"
MEMBER = "fink_science/data/alerts/CTAO_blazar_datatest_v20-12-24.parquet"
SHA256 = "a7a7172692378e0b7cab03b539170a3695fa5fd3a212402f79699efe3ff7a84a"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "real" / "ztf"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(out_dir: Path) -> Path:
    """The development set's path under ``out_dir``, downloaded and checked if missing."""
    target = out_dir / Path(MEMBER).name
    if target.is_file() and sha256(target) == SHA256:
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        cmd += ["--quiet", "--dest", tmp, PACKAGE]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"fetch_real_alerts: pip download {PACKAGE} failed:\n{result.stderr}")
        (sdist,) = Path(tmp).glob("fink*science-*.tar.gz")
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(MEMBER))
            data = tar.extractfile(member).read()
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise SystemExit(f"fetch_real_alerts: {MEMBER} in {PACKAGE} differs from the expected file")
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)  # atomic: never a half-written file under the real name
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder (default data/real/ztf)"
    )
    print(fetch(parser.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
