"""Comment-preserving edits of ruamel.yaml trees."""

from __future__ import annotations

import io

from gossamer.compose.comments import append, detach_tail, move_key, seq_to_map, set_before
from gossamer.compose.document import guess_indent, make_yaml
from gossamer.compose.validate import comments

TEXT = """\
services:
  web:  # the web
    image: nginx
    ports: # public
      - 80:80   # http
    depends_on:
      - db  # needs db

  # the database
  db:
    image: postgres
    expose:
      - 5432

# volumes below
volumes:
  data: {}
"""


def load(text: str = TEXT):
    yaml = make_yaml(guess_indent(text))
    return yaml, yaml.load(text)


def dump(yaml, data) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def test_detach_tail_keeps_the_end_of_line_comment():
    _, data = load()
    tail = detach_tail(data["services"]["web"])
    assert tail == "\n  # the database\n"
    assert detach_tail(data["services"]["web"]) is None  # already taken


def test_append_puts_the_new_key_above_the_comments_that_follow():
    yaml, data = load()
    append(data["services"]["web"], "network_mode", "service:web-netns")
    out = dump(yaml, data)
    assert "- db  # needs db\n    network_mode: service:web-netns\n\n  # the database\n  db:" in out
    assert comments(out) == comments(TEXT)


def test_move_key_carries_the_key_comment_and_the_value_comments():
    yaml, data = load()
    web = data["services"]["web"]
    owner = data["services"]["db"]
    move_key(web, "ports", owner)
    out = dump(yaml, data)
    assert "ports" not in web
    assert list(owner)[-1] == "ports"
    assert comments(out) == comments(TEXT)
    # the owner's trailing comments still come after everything the owner holds
    assert out.index("# volumes below") > out.index("- 80:80")


def test_moving_the_last_key_leaves_the_following_comment_in_place():
    yaml, data = load()
    db = data["services"]["db"]
    target = data["services"]["web"]
    move_key(db, "expose", target)
    out = dump(yaml, data)
    assert out.index("image: postgres") < out.index("# volumes below") < out.index("volumes:")
    assert comments(out) == comments(TEXT)


def test_seq_to_map_keeps_item_comments():
    yaml, data = load()
    web = data["services"]["web"]
    web["depends_on"] = seq_to_map(web["depends_on"], lambda _item: {"condition": "x"})
    out = dump(yaml, data)
    assert "db:" in out and "condition: x" in out
    assert comments(out) == comments(TEXT)
    assert out.index("# needs db") < out.index("# the database")


def test_set_before_adds_one_blank_line_and_a_comment():
    yaml, data = load()
    data["extra"] = {"a": 1}
    set_before(data, "extra", "hello")
    out = dump(yaml, data)
    assert out.endswith("  data: {}\n\n# hello\nextra:\n  a: 1\n")
