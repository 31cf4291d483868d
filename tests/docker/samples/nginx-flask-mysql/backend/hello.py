"""Blog post titles from MariaDB (service `db`, root's password in a Compose secret),
created on the first request and listed as HTML."""

import pymysql
from flask import Flask

PASSWORD_FILE = "/run/secrets/db-password"

server = Flask(__name__)
_connection = None


def database():
    """The connection to `db`, made (and the table filled) on first use."""
    global _connection
    if _connection is None:
        with open(PASSWORD_FILE) as f:
            password = f.read()
        _connection = pymysql.connect(
            host="db", user="root", password=password, database="example", autocommit=True
        )
        with _connection.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS blog")
            cur.execute("CREATE TABLE blog (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(255))")
            cur.executemany(
                "INSERT INTO blog (id, title) VALUES (%s, %s)",
                [(i, f"Blog post #{i}") for i in range(1, 5)],
            )
    return _connection


@server.route("/")
def list_blog():
    with database().cursor() as cur:
        cur.execute("SELECT title FROM blog")
        return "".join(f"<div>   Hello  {title}</div>" for (title,) in cur)
