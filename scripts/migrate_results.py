"""Bring results records written by older code up to what the reader checks, without retraining.

Two migrations, each applied once:

- records written before records carried them get a data fingerprint and a checksum;
- records made on a subset of the classes (the held-out-digit experiment, digits 0-4) were written with I(Z;Y)
  bounds H(Y) - class loss that took H(Y) = log2 10; the class loss is what was measured, so each bound is
  moved to H(Y) = log2 of the record's classes (balanced, as log2 10 was for all ten), and the record gets
  ``h_y_bits``, which new records carry.

    python scripts/migrate_results.py --data ../shared/data results/        # rewrite in place, print what changed
    python scripts/migrate_results.py --data ../shared/data --check results/

Every record this applies to was made by ``python -m vibtools reproduce`` on the full MNIST set (60 000 training
and 10 000 test images: the only data ``reproduce`` trains on outside the tests), so each gets that set's
fingerprint, computed here from the files in --data, and then its checksum. A record that already has both is
left byte for byte; a record of another size or that does not read as a results record is refused, not guessed at.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from vibtools import load_mnist
from vibtools.reproduce import data_record, load_results, record_checksum, sealed
from vibtools.results import OBJECTIVE_FOLDER
from vibtools.store import save_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--data", required=True, help="the folder holding MNIST/raw/ (the full set)")
    ap.add_argument("--check", action="store_true", help="list the records that need it, write nothing")
    args = ap.parse_args()
    full = data_record(load_mnist(args.data, download=False))
    if (full["n_train"], full["n_test"]) != (60_000, 10_000):
        sys.exit(f"{args.data} does not hold the full MNIST set: {full}")
    todo = []
    # objective-draws/ beside the K=2 records holds scripts/objective_draws.py's output, not records
    found = (p for folder in args.folders for p in folder.rglob("*.json") if OBJECTIVE_FOLDER not in p.parts)
    for path in sorted(found):
        record = json.loads(path.read_text())
        if "data" in record and "checksum" in record:
            migrated = h_y_migrated(record)
            if migrated is None:
                continue
            if record_checksum(record) != record["checksum"]:
                sys.exit(f"{path}: does not match its checksum; not migrated")
            todo.append(path)
            if not args.check:
                save_json(path, sealed(migrated))
                load_results(path)
            continue
        if record.get("data", full) != full:
            sys.exit(f"{path}: made on other data ({record['data']}); not migrated")
        todo.append(path)
        if not args.check:
            save_json(path, sealed({**record, "data": full}))
            load_results(path)  # reads as a complete, checked record now
    print(f"{'would migrate' if args.check else 'migrated'} {len(todo)} records"
          + "".join(f"\n  {p}" for p in todo))
    return 1 if args.check and todo else 0


def h_y_migrated(record: dict) -> dict | None:
    """The record with its I(Z;Y) bounds at H(Y) = log2 of its classes, or None when it needs no change."""
    classes = record["data"].get("classes")
    if classes is None or len(classes) >= 10 or "h_y_bits" in record:
        return None
    h_y = math.log2(len(classes))
    shift = h_y - math.log2(10)  # izy = H(Y) - class loss: the class loss stays
    history = {k: [v + shift for v in vals] if k.endswith("izy") else vals for k, vals in record["history"].items()}
    final = {split: {k: v + shift if k == "izy" else v for k, v in m.items()} for split, m in record["final"].items()}
    body = {k: v for k, v in record.items() if k != "checksum"}
    return {**body, "history": history, "final": final, "h_y_bits": h_y}


if __name__ == "__main__":
    sys.exit(main())
