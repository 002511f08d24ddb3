"""The example database of `spanlite demo`: a small shop, spread over several ranges.

    customers (30 rows)   id, name, city
    products  (12 rows)   id, name, category, price (whole dollars)
    orders   (240 rows)   id, customer_id, product_id, quantity, status; index on customer_id

`orders` is split at ids 61, 121 and 181 and `customers` at id 16 (ALTER TABLE ... SPLIT AT
VALUES), so a full scan of orders touches four ranges while `WHERE id = 7` touches one: the
point of the demo's EXPLAIN. The data is generated from a fixed seed, so every demo (and every
test) sees the same rows. Rows go in with multi-row INSERTs, one statement per table, to load in
well under a second on an embedded cluster.

The splits are made before the rows go in, while the ranges are empty; the stores' lease
balancer then spreads the new ranges' leases over the nodes within a few seconds.
"""

from __future__ import annotations

import random

from sql_lite_front.executor import Session

SEED = 20240601
ORDER_SPLITS = (61, 121, 181)
CUSTOMER_SPLITS = (16,)

CITIES = ("Lisbon", "Oslo", "Kyoto", "Austin", "Nairobi", "Lima")
FIRST_NAMES = ("Ada", "Alan", "Barbara", "Dennis", "Edsger", "Frances", "Grace", "John", "Ken", "Leslie",
               "Margaret", "Niklaus", "Radia", "Tony", "Whitfield")
LAST_NAMES = ("Lovelace", "Turing", "Liskov", "Ritchie", "Dijkstra", "Allen", "Hopper", "Backus", "Thompson",
              "Lamport", "Hamilton", "Wirth", "Perlman", "Hoare", "Diffie")
PRODUCTS = (
    ("keyboard", "hardware", 49), ("mouse", "hardware", 19), ("monitor", "hardware", 189),
    ("laptop stand", "hardware", 35), ("usb-c hub", "hardware", 29), ("headphones", "audio", 79),
    ("speaker", "audio", 59), ("microphone", "audio", 99), ("notebook", "stationery", 4),
    ("pen set", "stationery", 7), ("desk lamp", "furniture", 39), ("chair", "furniture", 249),
)
STATUSES = ("placed", "shipped", "shipped", "delivered", "delivered", "delivered", "returned")

CUSTOMERS = 30
ORDERS = 240

SCHEMA = """
CREATE TABLE customers (id INT PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
CREATE TABLE products (id INT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price INT NOT NULL);
CREATE TABLE orders (
    id INT PRIMARY KEY,
    customer_id INT NOT NULL,
    product_id INT NOT NULL,
    quantity INT NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'placed'
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
"""

# What the demo's banner suggests trying; each must run on the example data (tests run them).
EXAMPLE_STATEMENTS = (
    "SHOW RANGES FROM TABLE orders;",
    "SELECT c.name, count(*) AS n FROM orders o JOIN customers c ON o.customer_id = c.id "
    "GROUP BY c.name ORDER BY n DESC, c.name LIMIT 5;",
    "SELECT p.category, sum(o.quantity * p.price) AS revenue FROM orders o JOIN products p "
    "ON o.product_id = p.id GROUP BY p.category ORDER BY revenue DESC;",
    "SELECT * FROM orders WHERE customer_id = 7 AND quantity >= 2;",
    "EXPLAIN SELECT * FROM orders WHERE id = 7;",
    "BEGIN; UPDATE orders SET status = 'shipped' WHERE id = 7; SELECT status FROM orders WHERE id = 7; ROLLBACK;",
)


def example_script() -> str:
    """The whole example database as one SQL script (schema, splits, rows)."""
    rng = random.Random(SEED)
    statements = [SCHEMA.strip()]
    statements += [f"ALTER TABLE orders SPLIT AT VALUES ({key});" for key in ORDER_SPLITS]
    statements += [f"ALTER TABLE customers SPLIT AT VALUES ({key});" for key in CUSTOMER_SPLITS]
    statements.append(_insert("customers", _customers(rng)))
    statements.append(_insert("products", [(i, name, category, price)
                                           for i, (name, category, price) in enumerate(PRODUCTS, start=1)]))
    statements.append(_insert("orders", _orders(rng)))
    return "\n".join(statements)


def _customers(rng: random.Random) -> list[tuple]:
    names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    rng.shuffle(names)
    return [(i, names[i - 1], rng.choice(CITIES)) for i in range(1, CUSTOMERS + 1)]


def _orders(rng: random.Random) -> list[tuple]:
    # Some customers order much more than others, so "top customers" has an answer.
    weights = [1 + (i % 7 == 0) * 4 + (i % 5 == 0) * 2 for i in range(1, CUSTOMERS + 1)]
    customers = rng.choices(range(1, CUSTOMERS + 1), weights=weights, k=ORDERS)
    return [(i, customers[i - 1], rng.randint(1, len(PRODUCTS)), rng.randint(1, 4), rng.choice(STATUSES))
            for i in range(1, ORDERS + 1)]


def _insert(table: str, rows: list[tuple]) -> str:
    values = ",\n  ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
    return f"INSERT INTO {table} VALUES\n  {values};"


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


async def load_example(session: Session) -> None:
    """Create and fill the example tables through `session` (SqlError if any statement fails,
    e.g. because the tables exist already)."""
    await session.execute(example_script())


def describe_example() -> str:
    """A few lines for the demo's banner: what the example holds."""
    splits = ", ".join(str(k) for k in ORDER_SPLITS)
    return (f"Example database: customers ({CUSTOMERS} rows), products ({len(PRODUCTS)}), orders ({ORDERS}, "
            f"index on customer_id),\n"
            f"split so orders spans 4 ranges (at ids {splits}); leases spread over the nodes in a few seconds.")
