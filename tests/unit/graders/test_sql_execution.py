"""sql_execution on the shipped shop.sqlite: result-set comparison, writes and ATTACH refused
with the file unchanged (hash), and a runaway query stopped at the time limit."""

import hashlib
import shutil
import time
from pathlib import Path

import pytest

from rftkit.errors import RftkitError
from rftkit.graders import GraderContext, build_grader
from rftkit.types import Sample

SHOP = Path(__file__).parents[3] / "examples" / "sql" / "shop.sqlite"
COUNT_PARIS = "SELECT COUNT(*) FROM customers WHERE city = 'Paris'"


@pytest.fixture
def database(tmp_path) -> Path:
    return Path(shutil.copy(SHOP, tmp_path / "shop.sqlite"))


def sql_grader(database: Path, **options):
    spec = {"type": "sql_execution", "name": "sql", "database": database.name, **options}
    return build_grader(spec, GraderContext(base_dir=database.parent))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_rows_score_one_other_rows_zero(database):
    grader = sql_grader(database)
    item = {"reference_sql": "SELECT name FROM products WHERE category = 'toys'"}
    same = "```sql\nSELECT p.name FROM products AS p WHERE p.category = 'toys' ORDER BY p.name DESC;\n```"
    assert grader.grade(Sample(same), item).reward == 1.0  # order ignored by default
    assert grader.grade(Sample("SELECT name FROM products WHERE category = 'books'"), item).reward == 0.0
    grade = grader.grade(Sample("SELEC nonsense"), item)
    assert grade.reward == 0.0 and "syntax error" in grade.metadata["scores"]["sample_error"]
    assert not any(grade.metadata["errors"].values())  # a wrong answer is not a grader error


def test_ordered_and_partial_credit(database):
    item = {"reference_sql": "SELECT id FROM products WHERE id <= 4 ORDER BY id"}
    reversed_sql = "SELECT id FROM products WHERE id <= 4 ORDER BY id DESC"
    assert sql_grader(database, ordered=True).grade(Sample(reversed_sql), item).reward == 0.0
    assert sql_grader(database).grade(Sample(reversed_sql), item).reward == 1.0
    # rows {1,2,3} vs {1,2,3,4}: F1 = 2*3 / (3+4)
    partial = sql_grader(database, partial_credit=True).grade(Sample("SELECT id FROM products WHERE id <= 3"), item)
    assert partial.reward == pytest.approx(6 / 7)


@pytest.mark.parametrize("attack", [
    "DROP TABLE customers",
    "INSERT INTO customers VALUES (999, 'Eve', 'Paris', '2024-01-01')",
    "UPDATE products SET price = 0",
    "DELETE FROM orders",
    "ATTACH DATABASE '/tmp/evil.sqlite' AS evil",
    "PRAGMA writable_schema = 1",
    "CREATE TABLE t (x)",
    "SELECT 1; DROP TABLE customers",
    "WITH x AS (SELECT 1) DELETE FROM orders",
])
def test_writes_attach_and_pragmas_are_refused_and_the_file_is_unchanged(database, attack):
    before = digest(database)
    grader = sql_grader(database)
    grade = grader.grade(Sample(attack), {"reference_sql": COUNT_PARIS})
    assert grade.reward == 0.0 and grade.metadata["scores"]["sample_error"]
    assert grader.grade(Sample(COUNT_PARIS), {"reference_sql": COUNT_PARIS}).reward == 1.0
    grader.close()
    assert digest(database) == before
    assert not Path("/tmp/evil.sqlite").exists()


def test_runaway_recursive_query_stops_at_the_time_limit(database):
    grader = sql_grader(database, time_limit_seconds=0.5)
    runaway = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r"
    start = time.monotonic()
    grade = grader.grade(Sample(runaway), {"reference_sql": COUNT_PARIS})
    assert time.monotonic() - start < 30  # stopped, not run to the end (it has none)
    assert grade.reward == 0.0 and "time limit of 0.5 s" in grade.metadata["scores"]["sample_error"]
    assert grader.grade(Sample(COUNT_PARIS), {"reference_sql": COUNT_PARIS}).reward == 1.0


def test_batch_keeps_order_and_a_broken_reference_is_a_grader_error(database):
    grader = sql_grader(database)
    items = [{"reference_sql": COUNT_PARIS}, {"reference_sql": "SELECT nope FROM nowhere"}] * 20
    grades = grader.grade_many([Sample(COUNT_PARIS)] * 40, items)
    assert [g.reward for g in grades] == [1.0, 0.0] * 20
    assert grades[1].metadata["errors"]["other_error"] is True
    grader.close()


def test_missing_database_names_the_field(tmp_path):
    with pytest.raises(RftkitError, match="database: .*no such file"):
        build_grader({"type": "sql_execution", "database": "none.sqlite"}, GraderContext(base_dir=tmp_path))


def test_a_relative_database_path_never_climbs_out_with_dot_dot(database):
    (database.parent / "jobs").mkdir()
    spec = {"type": "sql_execution", "name": "sql", "database": "../shop.sqlite"}
    with pytest.raises(RftkitError, match=r"database: '../shop.sqlite' climbs out of its folder"):
        build_grader(spec, GraderContext(base_dir=database.parent / "jobs"))
    absolute = build_grader({**spec, "database": str(database)}, GraderContext(base_dir=database.parent / "jobs"))
    assert absolute.grade(Sample(COUNT_PARIS), {"reference_sql": COUNT_PARIS}).reward == 1.0  # the operator's own
