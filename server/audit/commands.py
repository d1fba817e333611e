"""`planfit audit-report`: a quarter's enrollment audit as CSV, straight from the database.

    planfit audit-report --quarter 2026Q3 [--close] [--part changes|strata] [--out FILE]

The same functions as `GET /fhir/Measure/product-alignment/$audit-quarter?_format=csv` write the CSV:
`changes` (default) lists the reconciliation's members (new, resolved, persisting), `strata` the stored
report's strata. `--close` first closes the quarter as `POST …/$audit-quarter` does (snapshot of the
findings as they stand, stored MeasureReport); without it the quarter must have been closed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.alignment.engine import AlignmentEngine, EngineConfig
from server.alignment.mappings import MappingError, load_mappings
from server.audit.output import csv_text
from server.audit.quarter import Quarter
from server.audit.report import (
    CHANGES_CSV_HEADER,
    STRATA_CSV_HEADER,
    changes_csv_rows,
    close_quarter,
    stored_changes,
    stored_report,
    strata_csv_rows,
)
from server.config import Settings
from server.fhir.errors import FhirError
from server.measures.definitions import load_definitions, report_displays
from server.store.db import make_engine, migrate
from server.store.resources import Store

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit-report", help="a quarter's enrollment audit as CSV (PLANFIT_DATABASE_URL)")
    parser.add_argument("--quarter", required=True, help="the quarter, e.g. 2026Q3")
    parser.add_argument("--close", action="store_true", help="close the quarter first (snapshot of the findings now)")
    parser.add_argument("--part", choices=("changes", "strata"), default="changes",
                        help="changes: the reconciliation's members (default); strata: the report's strata")
    parser.add_argument("--out", type=Path, help="write the CSV here (default: standard output)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        quarter = Quarter.parse(args.quarter)
        mappings = load_mappings(settings.mappings_dir or None, rates_file=settings.rates_file or None)
        config = EngineConfig.parse(settings.lookback_months, settings.evaluation_date)
    except (FhirError, MappingError, ValueError) as exc:
        print(f"planfit: {exc}", file=sys.stderr)
        return 2
    db = make_engine(settings.database_url)
    try:
        migrate(db)
        store = Store(db)
        if args.close:
            displays = report_displays(load_definitions(mappings))
            close_quarter(store, AlignmentEngine(db, mappings, config), quarter, displays)
        report = stored_report(store, quarter)
        if args.part == "strata":
            header, rows = STRATA_CSV_HEADER, strata_csv_rows(quarter, report)
        else:
            header, rows = CHANGES_CSV_HEADER, changes_csv_rows(quarter, stored_changes(store, quarter))
    except FhirError as exc:
        print(f"planfit: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    text = csv_text(header, rows)
    if args.out:
        args.out.write_text(text, newline="")
    else:
        sys.stdout.write(text)
    return 0
