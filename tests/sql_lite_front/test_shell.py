"""The SQL shell: splitting scripts, scripts going on after errors, meta-commands, expanded
output, and the prompt_toolkit loop driven through a pipe (prompts, multi-line, Ctrl-C, Ctrl-D)."""

import re

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from cluster.embedded import EmbeddedCluster
from sql_lite_front.example import load_example
from sql_lite_front.executor import Session
from sql_lite_front.output import render_expanded
from sql_lite_front.shell import Shell, interactive, new_history, split_script

# ---------------------------------------------------------------------------------------
# split_script


def texts(script):
    return [(p.kind, p.text) for p in split_script(script)]


def test_semicolons_inside_strings_identifiers_comments_and_dollar_quotes_do_not_split():
    script = ("SELECT 'a;b', 'it''s;' FROM \"we;ird\"; -- c;d\n"
              "SELECT /* x; /* nested; */ still; */ 1; SELECT $$a;b$$, $t$ ; $t$;")
    assert texts(script) == [
        ("sql", "SELECT 'a;b', 'it''s;' FROM \"we;ird\""),
        ("sql", "SELECT /* x; /* nested; */ still; */ 1"),
        ("sql", "SELECT $$a;b$$, $t$ ; $t$"),
    ]


def test_leading_comments_are_dropped_and_lines_point_at_the_statement():
    pieces = split_script("-- heading; not a statement\n\n/* block */ SELECT 1;\n;;\n  SELECT\n2")
    assert [(p.text, p.line, p.terminated) for p in pieces] == [("SELECT 1", 3, True), ("SELECT\n2", 5, False)]


def test_meta_commands_are_lines_where_no_statement_is_in_progress():
    script = "\\timing\nSELECT 1; \\x on\nSELECT\n\\d t\n;\n-- note\n\\i f.sql"
    assert texts(script) == [("meta", "\\timing"), ("sql", "SELECT 1"), ("meta", "\\x on"),
                             ("sql", "SELECT\n\\d t\n"), ("meta", "\\i f.sql")]


@pytest.mark.parametrize("script, what", [
    ("SELECT 'abc", "quoted string"),
    ("SELECT 'it''s", "quoted string"),
    ('SELECT "col', "quoted identifier"),
    ("SELECT 1 /* /* */", "/* comment"),
    ("SELECT $x$ ;", "dollar-quoted string"),
])
def test_the_last_statement_knows_what_was_left_open(script, what):
    last = split_script(script)[-1]
    assert (last.terminated, last.unterminated) == (False, what)


def test_dollar_inside_a_name_is_not_a_quote():
    assert texts("SELECT a$b$ FROM t; SELECT 2") == [("sql", "SELECT a$b$ FROM t"), ("sql", "SELECT 2")]


_word = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_chars = st.text(alphabet="ab ;'\"$-*/\\\n", max_size=8)
_fragment = st.one_of(
    _word,
    st.sampled_from([" ", "\n", ",", "(", ")", "=", "1", "$1", "-", "/", "*"]),
    _chars.map(lambda s: "'" + s.replace("'", "''") + "'"),
    _chars.map(lambda s: '"' + s.replace('"', '""') + '"'),
    _chars.map(lambda s: "--" + s.replace("\n", " ") + "\n"),
    _chars.filter(lambda s: "*/" not in s and "/*" not in s and not s.endswith("/")).map(lambda s: "/*" + s + "*/"),
    _chars.filter(lambda s: "$q$" not in s and not s.endswith(("$", "$q"))).map(lambda s: "$q$" + s + "$q$"),
)
# Fragments are separated by blanks, as a tokenizer needs: `a$q$` would be one name.
_statement = st.tuples(_word, st.lists(_fragment, max_size=8)).map(lambda t: " ".join([t[0], *t[1]]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_statement, min_size=1, max_size=6), st.sampled_from([";", ";\n", "; ", ";\n\n"]))
def test_splitting_joined_statements_gives_them_back(statements, separator):
    script = separator.join(statements) + ";"
    pieces = split_script(script)
    assert [p.text for p in pieces] == statements
    assert all(p.kind == "sql" and p.terminated and p.unterminated is None for p in pieces)
    assert [p.line for p in pieces] == [script.count("\n", 0, p.start) + 1 for p in pieces]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1 ;'\"$-*/\\\n", max_size=40))
def test_pieces_are_ordered_slices_and_a_complete_statement_splits_to_itself(script):
    pieces = split_script(script)
    end = 0
    for piece in pieces:
        assert piece.start >= end
        assert script[piece.start:piece.start + len(piece.text)] == piece.text
        end = piece.start + len(piece.text)
        if piece.kind == "sql" and piece.terminated:
            assert script[end] == ";"
            again = split_script(piece.text + ";")
            assert [(p.kind, p.text) for p in again] == [("sql", piece.text)]
    assert all(p.terminated for p in pieces[:-1])


# ---------------------------------------------------------------------------------------
# scripts and meta-commands on a one-node cluster


@pytest.fixture
async def session():
    async with EmbeddedCluster(nodes=1) as cluster:
        async with cluster.client() as db:
            yield Session(db)


def new_shell(session, **kwargs):
    out, err = [], []
    return Shell(session, out=out.append, err=err.append, **kwargs), out, err


async def test_a_script_goes_on_after_a_syntax_error_and_names_its_line(session):
    shell, out, err = new_shell(session)
    failed = await shell.run_script(
        "CREATE TABLE t (k INT PRIMARY KEY, v TEXT);\n"
        "INSERT INTO t VALUES (1, 'a');\n"
        "SELEC oops;\n"
        "INSERT INTO t VALUES (2, 'b;c');\n"
        "SELECT *\n  FORM t;\n"
        "SELECT v FROM t ORDER BY k", source="script.sql")
    assert failed == 2
    assert err[0].startswith('script.sql:3: ERROR:  syntax error at or near ') and "SQLSTATE: 42601" in err[0]
    assert err[1].startswith("script.sql:6: ERROR:")  # the line of the error's position, not of SELECT
    assert out[-1] == "  v\n-----\n a\n b;c\n(2 rows)"


async def test_an_unterminated_string_at_the_end_is_a_syntax_error(session):
    shell, out, err = new_shell(session)
    assert await shell.run_script("SELECT 1 AS one;\nSELECT 'abc;\n", source="<stdin>") == 1
    assert out == [" one\n-----\n   1\n(1 row)"]
    assert err[0].splitlines() == ["<stdin>:2: ERROR:  unterminated quoted string", "LINE 1: SELECT 'abc;",
                                   "               ^", "HINT:  close it with '", "SQLSTATE: 42601"]


async def test_describe_list_expanded_and_timing(session):
    await load_example(session)
    shell, out, err = new_shell(session)
    failed = await shell.run_script("\\d orders\n\\dt\n\\d\n\\timing\n\\x\n"
                                    "SELECT id, name FROM customers WHERE id <= 2 ORDER BY id;\n\\x off\n\\timing off")
    assert failed == 0 and err == []
    describe = out[0].splitlines()
    assert describe[0].strip() == 'Table "orders"'
    assert describe[1].split("|") == ["   Column    ", " Type ", " Nullable ", " Default"]
    assert " quantity    | int  | not null | 1" in describe
    assert " status      | text | not null | 'placed'" in describe
    assert describe[-3:] == ["Indexes:", '    "orders_pkey" PRIMARY KEY (id)',
                             '    "orders_customer_id_idx" (customer_id)']
    listing = out[1].splitlines()
    assert listing[0].strip() == "List of relations" and listing[-1] == "(3 rows)"
    assert [line.split("|")[0].strip() for line in listing[3:6]] == ["customers", "orders", "products"]
    assert out[2] == out[1]  # \d alone lists the tables
    assert out[3:5] == ["Timing is on.", "Expanded display is on."]
    record = r"-\[ RECORD {} \]-+\nid   \| {}\nname \| [A-Za-z ]+"
    assert re.fullmatch(record.format(1, 1) + r"\n" + record.format(2, 2), out[5])
    assert re.fullmatch(r"Time: \d+\.\d{3} ms", out[6])
    assert out[7:] == ["Expanded display is off.", "Timing is off."]


def test_expanded_rules_are_drawn_as_psql_draws_them():
    assert render_expanded(["a", "bb"], [(1, "hello"), (None, "x")]) == \
        "-[ RECORD 1 ]\na  | 1\nbb | hello\n-[ RECORD 2 ]\na  |\nbb | x"
    assert render_expanded(["datname"], [("postgres",)]) == "-[ RECORD 1 ]-----\ndatname | postgres"
    assert render_expanded(["a_long_column"], [("v",)]) == "-[ RECORD 1 ]-+--\na_long_column | v"
    assert render_expanded(["abcdefghijkl"], [("value",)]) == "-[ RECORD 1 ]+------\nabcdefghijkl | value"
    assert render_expanded(["a"], []) == "(0 rows)"


async def test_include_runs_a_file_going_on_after_its_errors(session, tmp_path):
    script = tmp_path / "setup.sql"
    script.write_text("CREATE TABLE t (k INT PRIMARY KEY);\n"
                      "INSERT INTO t VALUES (1);\n"
                      "INSERT INTO nope VALUES (2);\n"
                      "INSERT INTO t VALUES (3);\n")
    shell, out, err = new_shell(session)
    failed = await shell.run_script(f"\\i {script}\nSELECT count(*) AS n FROM t;\n\\i {tmp_path}/missing.sql\n"
                                    f"\\frobnicate\n\\q\nSELECT 'not reached';", source="main.sql")
    assert failed == 3
    assert err[0].startswith(f'{script}:3: ERROR:  relation "nope" does not exist') and "SQLSTATE: 42P01" in err[0]
    assert err[1].startswith(f"main.sql:3: {tmp_path}/missing.sql: No such file or directory")
    assert err[2] == "main.sql:4: invalid command \\frobnicate. Try \\? for help."
    assert out == ["CREATE TABLE", "INSERT 0 1", "INSERT 0 1", " n\n---\n 2\n(1 row)"]


async def test_a_file_including_itself_stops_with_an_error(session, tmp_path):
    script = tmp_path / "loop.sql"
    script.write_text(f"\\i {script}\n")
    shell, out, err = new_shell(session)
    assert await shell.run_script(f"\\i {script}") == 1
    assert "include each other more than 16 deep" in err[0]


async def test_errors_inside_a_block_fail_it_until_rollback(session):
    shell, out, err = new_shell(session)
    await shell.run_script("CREATE TABLE t (k INT PRIMARY KEY); BEGIN; INSERT INTO t VALUES (1); SELEC 1;")
    assert session.transaction_state == "failed"
    await shell.run_script("INSERT INTO t VALUES (2); \\d t")
    assert [e.splitlines()[-1] for e in err] == ["SQLSTATE: 42601", "SQLSTATE: 25P02", "SQLSTATE: 25P02"]
    await shell.run_script("ROLLBACK; SELECT count(*) AS n FROM t;")
    assert out[-1] == " n\n---\n 0\n(1 row)"


# ---------------------------------------------------------------------------------------
# the interactive loop, through prompt_toolkit's pipe input


class RecordingPromptSession(PromptSession):
    """A PromptSession that remembers each prompt it showed."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.shown = []

    def prompt(self, message=None, **kwargs):
        self.shown.append(message)
        return super().prompt(message, **kwargs)


async def drive(session, keys):
    """Type `keys` into the interactive shell; returns (prompts shown, out, err)."""
    out, err = [], []
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        prompt_session = RecordingPromptSession(input=pipe, output=DummyOutput(), history=InMemoryHistory())
        with trio.fail_after(20):
            await interactive(session, prompt_session=prompt_session, out=out.append, err=err.append)
    return prompt_session.shown, out, err


async def test_prompts_show_the_transaction_state_and_statements_span_lines(session):
    shown, out, err = await drive(session, "CREATE TABLE t (k INT PRIMARY KEY, v TEXT);\nBEGIN;\nINSERT INTO t\n"
                                           "VALUES (1, 'x;\ny');\nSELEC;\nROLLBACK;\n\\q\n")
    assert shown == ["spanlite> ", "spanlite> ", "spanlite*> ", "spanlite-> ", "spanlite-> ",
                     "spanlite*> ", "spanlite!> ", "spanlite> "]
    assert out == ["CREATE TABLE", "BEGIN", "INSERT 0 1", "ROLLBACK"]
    assert len(err) == 1 and "42601" in err[0]


async def test_ctrl_c_clears_the_statement_and_meta_commands_interleave(session):
    shown, out, err = await drive(session, "SELECT 'dropped'\n\x03SELECT\n\\x\n'kept' AS k;\n\\q\n")
    assert shown == ["spanlite> ", "spanlite-> ", "spanlite> ", "spanlite-> ", "spanlite-> ", "spanlite> "]
    assert out == ["Expanded display is on.", "-[ RECORD 1 ]\nk | kept"] and err == []


async def test_ctrl_d_rolls_back_an_open_transaction(session):
    await session.execute("CREATE TABLE t (k INT PRIMARY KEY)")
    shown, out, err = await drive(session, "BEGIN; INSERT INTO t VALUES (1);\n\x04")
    assert shown == ["spanlite> ", "spanlite*> "]
    assert out[-1].startswith("ROLLBACK") and session.transaction_state == "idle"
    assert (await session.execute("SELECT count(*) FROM t"))[0].rows == [(0,)]


# ---------------------------------------------------------------------------------------
# history


def test_history_goes_to_the_file_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SPANLITE_HISTORY", str(tmp_path / "history"))
    history = new_history()
    assert isinstance(history, FileHistory)
    history.append_string("SELECT 1;")
    assert "SELECT 1;" in (tmp_path / "history").read_text()


@pytest.mark.parametrize("where", ["not-a-directory/history", ""])
def test_history_falls_back_to_memory_when_the_file_cannot_be_written(tmp_path, monkeypatch, where):
    (tmp_path / "not-a-directory").write_text("a file where a directory should be")
    monkeypatch.setenv("SPANLITE_HISTORY", str(tmp_path / where) if where else "")
    history = new_history()
    assert isinstance(history, InMemoryHistory)
    history.append_string("SELECT 1;")  # and it works
