"""One-off, run once (2026-11-30): the committed D-CPT tables get the run ids of ``repro.runs``.

    PYTHONPATH=lib python3 scripts/convert_dcpt_run_ids.py

Each table under ``data/dcpt/`` made before ``repro.runs`` (ids ``s/code/r0.10``) gets the ids of that scheme
(``s/code/r0.10@<hash of the run's spec>``) and each run the provenance fields of that scheme; every value but the
id is kept, checked before anything is written. The logic is :func:`repro.dcpt.grid.convert_legacy_table`, which
refuses a table already converted, so running this again changes nothing and says so.
"""

from repro import paths
from repro.dcpt.grid import convert_legacy_table

for json_path in sorted((paths.DATA / "dcpt").glob("grid*.json")):
    table = json_path.with_suffix("")
    try:
        print(f"{table.relative_to(paths.ROOT)}: {convert_legacy_table(table, when='2026-11-30')} runs converted")
    except ValueError as e:
        print(f"{table.relative_to(paths.ROOT)}: left as it is ({e})")
