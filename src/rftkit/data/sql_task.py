"""Built-in NL->SQL task: a small shop database and templated questions about it, so that
`rftkit demo --task sql` and examples/sql share one source.

    "How many customers live in Rome?" -> "SELECT COUNT(*) FROM customers WHERE city = 'Rome'"

The `sql_execution` grader runs the model's query and the row's `reference_sql` on
shop.sqlite and compares the result sets; with `partial_credit` a query that finds some of
the rows earns the F1 of the two multisets. pass@1 counts exact result sets only.

Why templates, and these ones: a 1-6M-parameter byte-level model cannot learn SQL in
general in minutes, but it can learn a dozen query shapes, which shape a question asks for,
and which value of a small vocabulary (a city, a year, a category, a price) goes where. Shapes
range from one short WHERE to a JOIN with an aggregate, so after a short warm start the model
solves some questions at temperature 1 and slips on others — the regime where reinforcement
pays. What the tiny model does not learn in minutes is to copy a name it has seen in only a
few rows (20 customers, 20 products): questions by name (`BY_NAME_TEMPLATES`) are for models
that read the schema, in examples/sql.

Held-out questions are (template, values) pairs that training never shows: "How many orders
came from Rome?" is held out while "How many customers live in Rome?" is trained on, and every
held-out value appears in training under some other template. So the held-out score measures
putting a known value into a known shape in a combination never seen.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from rftkit.data.builtin import demo_job, write_jsonl

CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Rome", "Oslo", "Lisbon", "Vienna", "Prague", "Dublin"]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "toys"]
FIRST = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Dennis", "Edsger", "Frances", "Ken", "Margaret",
         "John", "Donald", "Radia", "Tim", "Guido", "Bjarne", "Niklaus", "Leslie", "Shafi", "Judea"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov", "Ritchie", "Dijkstra", "Allen", "Thompson",
        "Hamilton", "Backus", "Knuth", "Perlman", "Lee", "Rossum", "Stroustrup", "Wirth", "Lamport", "Goldwasser",
        "Pearl"]
NOUNS = ["lamp", "kettle", "novel", "puzzle", "shovel", "drum", "kite", "teapot", "atlas", "rake", "flute", "robot",
         "chess set", "watering can", "cookbook", "guitar", "yo-yo", "blender", "hammock", "ukulele"]
YEARS = list(range(2019, 2025))
ORDERS = 300
PRICES = list(range(5, 96, 5))  # the thresholds of "cheaper than N"

SCHEMA = """CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL, joined DATE NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
  product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL, ordered_at DATE NOT NULL);"""

# For models that read a schema (examples/sql with an instruction-tuned model). The tiny
# model's rows have no system turn: the schema never changes, and each byte is a token.
SCHEMA_SYSTEM = "Answer with one SQLite query and nothing else. Schema:\n" + SCHEMA


def sql_grader(database: str | Path) -> dict:
    """The task's grader: same result set as the reference, F1 over rows as partial credit."""
    return {"type": "sql_execution", "name": "same result set", "database": str(database),
            "input": "{{ sample.output_text }}", "reference": "{{ item.reference_sql }}",
            "ordered": False, "partial_credit": True, "time_limit_seconds": 2}


@dataclass(frozen=True)
class Shop:
    """The values the questions are about, as they are in the database."""

    customers: list[str]
    products: list[str]


def build_shop(path: Path, seed: int = 0) -> Shop:
    """Write shop.sqlite (20 customers, 20 products, 300 orders), the same for the same seed."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    names = [f"{first} {last}" for first, last in zip(FIRST, rng.sample(LAST, len(LAST)))]
    customers = [(i + 1, name, rng.choice(CITIES), f"{rng.choice(YEARS)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
                 for i, name in enumerate(names)]
    products = [(i + 1, noun, rng.choice(CATEGORIES), round(rng.uniform(2, 90), 2)) for i, noun in enumerate(NOUNS)]
    orders = [(i + 1, rng.randint(1, len(customers)), rng.randint(1, len(products)), rng.randint(1, 5),
               f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}") for i in range(ORDERS)]
    db = sqlite3.connect(path)
    try:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", customers)
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", products)
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", orders)
        db.commit()
    finally:
        db.close()
    return Shop(customers=names, products=list(NOUNS))


@dataclass(frozen=True)
class Template:
    """One query shape: `sql` and each of its `questions` (phrasings of the same question) are
    format strings over the same slots."""

    name: str
    questions: tuple[str, ...]
    sql: str
    slots: tuple[str, ...]


_BY_CUSTOMER = "FROM orders JOIN customers ON customers.id = customer_id WHERE "
_BY_PRODUCT = "FROM orders JOIN products ON products.id = product_id WHERE "
# Values from small vocabularies (10 cities, 6 years, 6 categories, 19 prices), each in many
# rows: the shapes a 1.1M-parameter model learns in minutes. `rftkit demo --task sql` asks these.
TEMPLATES = [
    Template("city_count", ("How many customers live in {city}?", "Count the customers in {city}.",
                            "Number of customers from {city}?"),
             "SELECT COUNT(*) FROM customers WHERE city = '{city}'", ("city",)),
    Template("city_names", ("Which customers live in {city}?", "List the customers in {city}.",
                            "Who lives in {city}?"),
             "SELECT name FROM customers WHERE city = '{city}'", ("city",)),
    Template("city_orders", ("How many orders came from {city}?", "Count the orders of customers in {city}.",
                             "Number of orders placed from {city}?"),
             "SELECT COUNT(*) " + _BY_CUSTOMER + "city = '{city}'", ("city",)),
    Template("city_units", ("How many units did customers in {city} buy?", "Total quantity ordered from {city}?",
                            "How many items were bought in {city}?"),
             "SELECT SUM(quantity) " + _BY_CUSTOMER + "city = '{city}'", ("city",)),
    Template("year_count", ("How many customers joined in {year}?", "Count the customers who joined in {year}.",
                            "Number of customers who joined in {year}?"),
             "SELECT COUNT(*) FROM customers WHERE joined LIKE '{year}%'", ("year",)),
    Template("year_names", ("Which customers joined in {year}?", "Who joined in {year}?",
                            "List the customers who joined in {year}."),
             "SELECT name FROM customers WHERE joined LIKE '{year}%'", ("year",)),
    Template("category_names", ("Which products are in {category}?", "List the {category} products.",
                                "What is sold in {category}?"),
             "SELECT name FROM products WHERE category = '{category}'", ("category",)),
    Template("category_top", ("What is the priciest product in {category}?", "Most expensive {category} product?",
                              "Which {category} product costs the most?"),
             "SELECT name FROM products WHERE category = '{category}' ORDER BY price DESC LIMIT 1", ("category",)),
    Template("category_orders", ("How many orders were for {category} products?", "Count the {category} orders.",
                                 "Number of orders in {category}?"),
             "SELECT COUNT(*) " + _BY_PRODUCT + "category = '{category}'", ("category",)),
    Template("category_units", ("How many {category} units were sold?", "Total quantity of {category} ordered?",
                                "How many items in {category} were bought?"),
             "SELECT SUM(quantity) " + _BY_PRODUCT + "category = '{category}'", ("category",)),
    Template("cheaper", ("Which products cost less than {price}?", "List the products cheaper than {price}.",
                         "What costs under {price}?"),
             "SELECT name FROM products WHERE price < {price}", ("price",)),
    Template("count_cheaper", ("How many products cost less than {price}?", "Count the products under {price}.",
                               "Number of products cheaper than {price}?"),
             "SELECT COUNT(*) FROM products WHERE price < {price}", ("price",)),
    Template("category_cheaper", ("Which {category} products cost less than {price}?",
                                  "List the {category} products cheaper than {price}.",
                                  "What in {category} costs under {price}?"),
             "SELECT name FROM products WHERE category = '{category}' AND price < {price}", ("category", "price")),
    Template("category_pricier", ("Which {category} products cost more than {price}?",
                                  "List the {category} products dearer than {price}.",
                                  "What in {category} costs over {price}?"),
             "SELECT name FROM products WHERE category = '{category}' AND price > {price}", ("category", "price")),
]
# Questions that name one of 20 customers or 20 products: an instruction-tuned model copies the
# name from the question, but the tiny model never learned to (0% on these shapes after 340
# warm-start steps, and with the warm start rebalanced toward them), so only examples/sql's
# files for instruction-tuned models ask them (`write_sql_task(..., by_name=True)`).
BY_NAME_TEMPLATES = [
    Template("customer_city", ("Where does {customer} live?", "Which city is {customer} in?",
                               "What city does {customer} live in?"),
             "SELECT city FROM customers WHERE name = '{customer}'", ("customer",)),
    Template("customer_orders", ("How many orders did {customer} place?", "Count the orders of {customer}.",
                                 "Number of orders by {customer}?"),
             "SELECT COUNT(*) " + _BY_CUSTOMER + "name = '{customer}'", ("customer",)),
    Template("customer_units", ("How many units did {customer} buy?", "Total quantity ordered by {customer}?",
                                "How many items has {customer} bought?"),
             "SELECT SUM(quantity) " + _BY_CUSTOMER + "name = '{customer}'", ("customer",)),
    Template("product_price", ("What does the {product} cost?", "Price of the {product}?",
                               "How much is the {product}?"),
             "SELECT price FROM products WHERE name = '{product}'", ("product",)),
    Template("product_units", ("How many units of the {product} were sold?", "Total quantity of the {product} ordered?",
                               "How many {product} units were ordered?"),
             "SELECT SUM(quantity) " + _BY_PRODUCT + "name = '{product}'", ("product",)),
]


@dataclass(frozen=True)
class Question:
    template: str
    values: tuple[tuple[str, str], ...]  # (slot, value) in the template's slot order
    phrasings: tuple[str, ...]
    sql: str


def slot_values(shop: Shop) -> dict[str, list[str]]:
    return {"city": CITIES, "year": [str(y) for y in YEARS], "customer": shop.customers, "category": CATEGORIES,
            "price": [str(p) for p in PRICES], "product": shop.products}


def fill(template: Template, combo: tuple[str, ...]) -> Question:
    filled = dict(zip(template.slots, combo))
    return Question(template.name, tuple(filled.items()), tuple(q.format(**filled) for q in template.questions),
                    template.sql.format(**filled))


def all_questions(shop: Shop, database: Path, templates: list[Template]) -> list[Question]:
    """Every template instance whose reference SQL returns at least one row (and, for an
    aggregate, a value that is not NULL), in a fixed order."""
    values = slot_values(shop)
    found: list[Question] = []
    db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        for template in templates:
            for combo in _combinations([values[slot] for slot in template.slots]):
                question = fill(template, combo)
                rows = db.execute(question.sql).fetchall()
                if rows and all(v is not None for row in rows for v in row):
                    found.append(question)
    finally:
        db.close()
    return found


def _combinations(pools: list[list[str]]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for pool in pools:
        combos = [c + (v,) for c in combos for v in pool]
    return combos


def split_held_out(questions: list[Question], share: float, rng: random.Random) -> tuple[list[Question], list[Question]]:
    """(train, held_out): about `share` of each template's instances held out, never a value
    whose every question would be held out (each held-out value is trained on elsewhere)."""
    held: list[Question] = []
    for template in dict.fromkeys(q.template for q in questions):  # the templates, in their order
        mine = [q for q in questions if q.template == template]
        held += rng.sample(mine, round(share * len(mine)))
    held_set = set(held)
    for slot_value in sorted({v for q in questions for v in q.values}):
        using = [q for q in questions if slot_value in q.values]
        if all(q in held_set for q in using):
            held_set.discard(using[0])
    return [q for q in questions if q not in held_set], [q for q in questions if q in held_set]


def sql_row(question: Question, phrasing: str, *, labelled: bool, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": phrasing})
    if labelled:
        messages.append({"role": "assistant", "content": question.sql})
    return {"messages": messages, "reference_sql": question.sql, "template": question.template}


def write_sql_task(out: str | Path, *, seed: int = 0, held_out: float = 0.25, sft: int | None = None,
                   system: str | None = None, by_name: bool = False) -> dict[str, Path]:
    """Write the SQL task's files into `out`, the same for the same seed.

    - shop.sqlite: the database the grader runs queries on;
    - train.jsonl: RL prompts, every phrasing of every training question, with `reference_sql`
      (and `template`, for per-template figures);
    - valid.jsonl: one phrasing of each held-out question, none of them in train or sft;
    - sft.jsonl: the training prompts labelled (the reference SQL as the assistant turn), the
      first `sft` of them (None: all).
    `system`: a system turn for every row (`SCHEMA_SYSTEM` for a model that needs the schema);
    `by_name`: also the questions that name a customer or a product (`BY_NAME_TEMPLATES`).
    """
    out = Path(out)
    database = out / "shop.sqlite"
    shop = build_shop(database, seed)
    rng = random.Random(seed)
    templates = TEMPLATES + BY_NAME_TEMPLATES if by_name else TEMPLATES
    train, valid = split_held_out(all_questions(shop, database, templates), held_out, rng)
    prompts = [(q, phrasing) for q in train for phrasing in q.phrasings]
    rng.shuffle(prompts)
    held = [(q, rng.choice(q.phrasings)) for q in valid]
    rng.shuffle(held)
    return {
        "database": database,
        "train": write_jsonl(out / "train.jsonl", [sql_row(q, p, labelled=False, system=system) for q, p in prompts]),
        "valid": write_jsonl(out / "valid.jsonl", [sql_row(q, p, labelled=False, system=system) for q, p in held]),
        "sft": write_jsonl(out / "sft.jsonl",
                           [sql_row(q, p, labelled=True, system=system) for q, p in prompts[:sft]]),
    }


# `rftkit demo --task sql`'s defaults (src/rftkit/cli/train.py), measured in examples/sql/README.md
SQL_ANSWER_TOKENS = 120  # the longest reference query is 111 bytes (by name; 101 without), and its end-of-turn token
SQL_SFT_STEPS = 400
SQL_TARGET_PASS = 0.15  # 0.25 left a base whose sampling was nearer its greedy answers, and less to gain
SQL_CHECK_AFTER = 50  # this task's warm start can be good enough sooner than addition's
SQL_RL_STEPS = 120


def sql_job(model: str, data: Path, *, steps: int, seed: int = 0) -> dict:
    """The demo's reinforcement job on the files `write_sql_task` wrote into `data`."""
    with (data / "train.jsonl").open() as rows:
        train_rows = sum(1 for _ in rows)
    return demo_job(model, data, sql_grader(data / "shop.sqlite"), steps=steps, seed=seed, train_rows=train_rows,
                    validations=2, warmup_steps=5, max_prompt_tokens=64, max_completion_tokens=SQL_ANSWER_TOKENS)