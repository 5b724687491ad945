"""Build the NL->SQL example: a small shop database and questions about it.

    python examples/sql/make_data.py

Writes, next to this script:
- shop.sqlite: customers, products and orders (deterministic for the seed);
- train.jsonl / valid.jsonl: reinforcement rows — the schema as a system turn, a question as
  the user turn, and `reference_sql`, which the `sql_execution` grader runs to get the
  expected result set;
- sft.jsonl: a few labelled rows (the reference SQL as the assistant turn) for a warm start.

Questions are built from templates, and valid.jsonl holds templates' instances whose
values (cities, products, customers) never appear in train.jsonl.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

HERE = Path(__file__).parent
CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Rome", "Oslo", "Lisbon", "Vienna", "Prague", "Dublin"]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "toys"]
FIRST = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Dennis", "Edsger", "Frances", "Ken", "Margaret",
         "John", "Donald", "Radia", "Tim", "Guido", "Bjarne", "Niklaus", "Leslie", "Shafi", "Judea"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Ritchie", "Dijkstra", "Allen", "Thompson",
        "Hamilton", "Backus", "Knuth", "Perlman", "Lee", "Rossum", "Stroustrup", "Wirth", "Lamport", "Goldwasser", "Pearl"]
NOUNS = ["lamp", "kettle", "novel", "puzzle", "shovel", "drum", "kite", "teapot", "atlas", "rake", "flute", "robot",
         "chess set", "watering can", "cookbook", "guitar", "yo-yo", "blender", "hammock", "ukulele"]

SCHEMA = """CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, joined DATE NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
  product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL, ordered_at DATE NOT NULL);"""

SYSTEM = "Answer with one SQLite query and nothing else. Schema:\n" + SCHEMA


def build_database(path: Path, rng: random.Random) -> dict:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    names = [f"{f} {l}" for f, l in zip(FIRST, rng.sample(LAST, len(LAST)))]
    customers = [(i + 1, n, rng.choice(CITIES), f"{rng.randint(2019, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
                 for i, n in enumerate(names)]
    products = [(i + 1, n, rng.choice(CATEGORIES), round(rng.uniform(2, 90), 2)) for i, n in enumerate(NOUNS)]
    orders = [(i + 1, rng.randint(1, len(customers)), rng.randint(1, len(products)), rng.randint(1, 5),
               f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}") for i in range(200)]
    db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", customers)
    db.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", products)
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", orders)
    db.commit()
    db.close()
    return {"customers": [c[1] for c in customers], "products": [p[1] for p in products]}


def questions(values: dict) -> list[tuple[str, str, str]]:
    """(question, reference SQL, the value it is about) for every template instance."""
    rows = []
    for city in CITIES:
        rows.append((f"How many customers live in {city}?", f"SELECT COUNT(*) FROM customers WHERE city = '{city}'", city))
        rows.append((f"List the names of customers in {city}.", f"SELECT name FROM customers WHERE city = '{city}'", city))
    for category in CATEGORIES:
        rows.append((f"Which products are in the {category} category?",
                     f"SELECT name FROM products WHERE category = '{category}'", category))
        rows.append((f"What is the most expensive product in {category}?",
                     f"SELECT name FROM products WHERE category = '{category}' ORDER BY price DESC LIMIT 1", category))
    for product in values["products"]:
        rows.append((f"What does the {product} cost?", f"SELECT price FROM products WHERE name = '{product}'", product))
        rows.append((f"How many units of the {product} were ordered in total?",
                     "SELECT SUM(o.quantity) FROM orders o JOIN products p ON p.id = o.product_id "
                     f"WHERE p.name = '{product}'", product))
    for customer in values["customers"]:
        rows.append((f"How many orders did {customer} place?",
                     "SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
                     f"WHERE c.name = '{customer}'", customer))
        rows.append((f"Which city does {customer} live in?", f"SELECT city FROM customers WHERE name = '{customer}'", customer))
    for year in range(2019, 2025):
        rows.append((f"Which customers joined in {year}?",
                     f"SELECT name FROM customers WHERE strftime('%Y', joined) = '{year}'", str(year)))
    return rows


def row(question: str, sql: str, *, labelled: bool) -> dict:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    if labelled:
        messages.append({"role": "assistant", "content": sql})
    return {"messages": messages, "reference_sql": sql}


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main(seed: int = 0) -> None:
    rng = random.Random(seed)
    values = build_database(HERE / "shop.sqlite", rng)
    everything = questions(values)
    subjects = sorted({subject for _, _, subject in everything})
    held_out = set(rng.sample(subjects, len(subjects) // 5))
    train = [(q, s) for q, s, subject in everything if subject not in held_out]
    valid = [(q, s) for q, s, subject in everything if subject in held_out]
    rng.shuffle(train)
    write(HERE / "train.jsonl", [row(q, s, labelled=False) for q, s in train])
    write(HERE / "valid.jsonl", [row(q, s, labelled=False) for q, s in valid])
    write(HERE / "sft.jsonl", [row(q, s, labelled=True) for q, s in train[:24]])
    print(f"shop.sqlite, {len(train)} train, {len(valid)} valid, 24 sft rows")


if __name__ == "__main__":
    main()
