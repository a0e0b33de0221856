"""Write ``standard-name-units.json`` beside this script: the canonical units of every CF
standard name (aliases included), from the standard-name table compliance-checker ships.

climgen checks an input's units against its standard name (:mod:`climgen.io.units`) without
needing compliance-checker at run time; rerun this after upgrading it to take a newer table:

    python climgen/data/cf/make_standard_name_units.py
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from climgen.io.checks import standard_name_table


def main() -> None:
    root = ET.parse(standard_name_table()).getroot()
    units = {entry.get("id"): (entry.findtext("canonical_units") or "").strip() for entry in root.iter("entry")}
    for alias in root.iter("alias"):
        target = alias.findtext("entry_id")
        if target in units:
            units[alias.get("id")] = units[target]
    version = root.findtext("version_number")
    table = {
        "source": f"CF Standard Name Table version {version} (https://cfconventions.org), canonical units only",
        "version": version,
        "canonical_units": dict(sorted(units.items())),
    }
    target = Path(__file__).with_name("standard-name-units.json")
    target.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    print(f"{target}: {len(units)} names of table version {table['version']}")


if __name__ == "__main__":
    main()
