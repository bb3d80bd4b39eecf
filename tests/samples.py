"""Small generated files in the layouts of the shipped dataset profiles (tests never read ../shared).

Each generator writes rows as the real files spell them: the Sparkov extract's ``DD-MM-YYYY HH:MM``
times and doubly quoted names, ULB's seconds since the first transaction and PCA columns. Frauds
follow a simple pattern the model can learn (larger amounts, a far merchant, one category; for ULB a
shifted V14), so a model trained on them ranks better than chance.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

CATEGORIES = ["grocery_pos", "gas_transport", "shopping_net", "misc_net", "food_dining"]
MERCHANTS = ["Stokes, Christiansen and Sipes", "Predovic Inc", "Wisozk and Sons", "Murray-Smitham", "Kub LLC"]
SPARKOV_EXTRACT_COLUMNS = [
    "trans_date_trans_time",
    "merchant",
    "category",
    "amt",
    "city",
    "state",
    "lat",
    "long",
    "city_pop",
    "job",
    "dob",
    "trans_num",
    "merch_lat",
    "merch_long",
    "is_fraud",
]


def sparkov_extract_rows(n: int = 600, seed: int = 7, start: datetime = datetime(2020, 3, 1)) -> list[dict[str, str]]:
    """Rows of the Sparkov extract layout: 12 card holders, 5 merchants, about 10 % fraud."""
    rng = np.random.default_rng(seed)
    holders = [
        {
            "dob": f"{rng.integers(1, 28):02d}-{rng.integers(1, 12):02d}-{rng.integers(1940, 2000)}",
            "job": f'"Engineer, grade {k}"',
            "lat": f"{rng.uniform(30, 45):.4f}",
            "long": f"{rng.uniform(-120, -75):.4f}",
            "city": f"Town{k}",
            "state": "CA",
            "city_pop": str(int(rng.integers(100, 2_000_000))),
        }
        for k in range(12)
    ]
    minutes = np.sort(rng.integers(0, 60 * 24 * 40, size=n))
    minutes[5] = minutes[4]  # two transactions in the same minute
    rows = []
    for i, minute in enumerate(minutes):
        holder = holders[int(rng.integers(len(holders)))]
        fraud = rng.random() < 0.1
        lat, long = float(holder["lat"]), float(holder["long"])
        far = 3.0 if fraud else 0.3
        merchant = MERCHANTS[int(rng.integers(len(MERCHANTS)))]
        rows.append(
            {
                "trans_date_trans_time": (start + timedelta(minutes=int(minute))).strftime("%d-%m-%Y %H:%M"),
                "merchant": f'"{merchant}"' if "," in merchant else merchant,
                "category": "shopping_net" if fraud and rng.random() < 0.7 else CATEGORIES[int(rng.integers(5))],
                "amt": f"{rng.uniform(300, 1200) if fraud else rng.uniform(1, 150):.2f}",
                "city": holder["city"],
                "state": holder["state"],
                "lat": holder["lat"],
                "long": holder["long"],
                "city_pop": holder["city_pop"],
                "job": holder["job"],
                "dob": holder["dob"],
                "trans_num": f"{seed:04x}{i:028x}",
                "merch_lat": f"{lat + rng.uniform(-far, far):.6f}",
                "merch_long": f"{long + rng.uniform(-far, far):.6f}",
                "is_fraud": "1" if fraud else "0",
            }
        )
    return rows


def write_sparkov_extract(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write rows as the extract does: names already wrapped in quotes get quoted again (``\"\"\"...\"\"\"``)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SPARKOV_EXTRACT_COLUMNS, quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        writer.writerows(rows)
    return path


ULB_COLUMNS = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]
#: Where the ulb-creditcard profile puts Time 0.
ULB_ORIGIN = datetime(2013, 9, 1, tzinfo=UTC)


def ulb_rows(n: int = 800, seed: int = 11, index_column: bool = False, days: int = 2) -> list[dict[str, str]]:
    """Rows of the ULB creditcard.csv layout: ``days`` days of seconds (2 in the real file), V1..V28, Amount, Class."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, days * 86_400 - 8, size=n))
    seconds[3] = seconds[2]  # same-second transactions
    rows = []
    for i, second in enumerate(seconds):
        fraud = rng.random() < 0.05
        v = rng.normal(0, 1, size=28)
        if fraud:
            v[13] -= 4.0  # V14: the dataset's strongest single signal is a low V14
            v[11] -= 2.0
        row = {"": str(i)} if index_column else {}
        row |= {"Time": f"{float(second):.1f}"}
        row |= {f"V{k + 1}": repr(float(v[k])) for k in range(28)}
        row |= {"Amount": f"{rng.uniform(0, 400):.2f}", "Class": '"1"' if fraud else '"0"'}
        rows.append(row)
    return rows


def write_ulb(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write rows as Kaggle's creditcard.csv does (``Class`` quoted: ``"0"``)."""
    columns = list(rows[0])
    lines = [",".join(f'"{c}"' if c else '""' for c in columns)]
    lines += [",".join(row[c] for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
