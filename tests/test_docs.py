"""The docs match the code: every environment variable the code reads is in
docs/configuration.md's tables, every `flask` command of the project is in
docs/deployment.md's command list, every public route is on a page of docs/, and the
snapshot example in docs/realtime.md has the real snapshot's fields.

Each check reads the code itself (the source's syntax tree, the app's click groups and
URL map), so a new variable, command or route without its docs fails here.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import click

from paymentapp.callbacks.pipeline import KINDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCES = [
    *sorted((ROOT / "paymentapp").rglob("*.py")),
    ROOT / "gunicorn.conf.py",
    ROOT / "wsgi.py",
]

VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
# A mapping of settings: config.py's `env`, environment.py's `environ`, or `os.environ`
ENV_NAMES = {"env", "environ"}
# What a WSGI `environ` holds (PEP 3333), never a setting: such reads are not counted
WSGI_KEYS = re.compile(
    r"^(HTTP_\w+|REQUEST_METHOD|SCRIPT_NAME|PATH_INFO|QUERY_STRING|CONTENT_TYPE"
    r"|CONTENT_LENGTH|SERVER_NAME|SERVER_PORT|SERVER_PROTOCOL|REMOTE_ADDR|REMOTE_HOST|RAW_URI)$"
)
# Helpers of config.py that read the variable named by their string argument
ENV_HELPERS = {
    "whole_number",
    "seconds",
    "flag",
    "on_off",
    "one_of",
    "_rate_limit",
    "required_when_live",
}
# Read by the code but deliberately not in docs/configuration.md, each with its reason
UNDOCUMENTED = {
    # gunicorn.conf.py sets it itself, to tell its own temporary metrics directory from
    # one an operator gave in PROMETHEUS_MULTIPROC_DIR; nobody sets it by hand
    "PAYMENTAPP_METRICS_TMPDIR",
}


# -- environment variables ------------------------------------------------------------------


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _is_env(node: ast.AST) -> bool:
    """A mapping of settings by name (ENV_NAMES) or `os.environ` (not `request.environ`)."""
    return (isinstance(node, ast.Name) and node.id in ENV_NAMES) or _is_os_environ(node)


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _name_arguments(call: ast.Call) -> list[ast.expr]:
    """The arguments of `call` that may name a variable it reads: the first of
    `env.get(...)`, `os.environ.get(...)` or `os.getenv(...)` (the second is a default),
    every one of a helper given `env` (first or second argument) or named in ENV_HELPERS;
    none of any other call."""
    func = call.func
    if (isinstance(func, ast.Attribute) and _is_env(func.value)) or _call_name(call) == "getenv":
        return call.args[:1]
    if _call_name(call) in ENV_HELPERS or any(_is_env(arg) for arg in call.args[:2]):
        return call.args
    return []


def env_variables(path: Path) -> set[str]:
    """Every variable name `path` reads from the environment (string literals, or
    module-level string constants, in the reading expressions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def names(nodes) -> set[str]:
        found = set()
        for node in nodes:
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(node, ast.Name):
                value = constants.get(node.id)
            if isinstance(value, str) and VARIABLE.match(value) and not WSGI_KEYS.match(value):
                found.add(value)
        return found

    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found |= names(_name_arguments(node))
        elif isinstance(node, ast.Subscript) and _is_env(node.value):
            found |= names([node.slice])
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.In | ast.NotIn) for op in node.ops
        ):
            if any(_is_env(comparator) for comparator in node.comparators):
                found |= names([node.left])
    return found


def documented_variables() -> set[str]:
    """The variables in docs/configuration.md's tables (the first cell of each row)."""
    found = set()
    for line in (DOCS / "configuration.md").read_text().splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            found |= set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", first_cell))
    return found


def test_the_scanner_finds_every_way_of_reading_a_variable(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "import os\n"
        "MARKER = 'SAMPLE_MARKER'\n"
        "def load(env, environ, request):\n"
        "    env.get('SAMPLE_GET')\n"
        "    os.environ.get('SAMPLE_OS_GET', 'NOT_A_NAME')\n"
        "    os.environ['SAMPLE_OS_ITEM']\n"
        "    os.getenv('SAMPLE_GETENV')\n"
        "    os.environ.get(MARKER)\n"
        "    _int(env, 'SAMPLE_INT', 3, minimum=1)\n"
        "    required_when_live('SAMPLE_LIVE', None)\n"
        "    if 'SAMPLE_IN' not in env: pass\n"
        "    environ.get('SAMPLE_ENVIRON')\n"
        "    environ.get('HTTP_ORIGIN'), environ.get('PATH_INFO')  # a WSGI environ's\n"
        "    request.environ.get('NOT_ENV_EITHER')\n"
        "    config.get('NOT_ENV')\n"
    )
    assert env_variables(source) == {
        "SAMPLE_GET",
        "SAMPLE_OS_GET",
        "SAMPLE_OS_ITEM",
        "SAMPLE_GETENV",
        "SAMPLE_MARKER",
        "SAMPLE_INT",
        "SAMPLE_LIVE",
        "SAMPLE_IN",
        "SAMPLE_ENVIRON",
    }


def test_every_environment_variable_is_in_configuration_md():
    read = {}
    for path in SOURCES:
        for name in env_variables(path):
            read.setdefault(name, path.relative_to(ROOT))
    assert "SECRET_KEY" in read and "WORKER_CONNECTIONS" in read  # the scan works
    missing = sorted(set(read) - documented_variables() - UNDOCUMENTED)
    assert not missing, "not in docs/configuration.md's tables: " + ", ".join(
        f"{name} (read in {read[name]})" for name in missing
    )
    stale = sorted(UNDOCUMENTED - set(read))
    assert not stale, f"UNDOCUMENTED lists variables nothing reads: {stale}"


def test_every_variable_in_configuration_md_is_read():
    """No stale row: each one is read by the code, or (the "Tests only" table) by the
    tests. A row the scan cannot find also shows a way of reading it does not know."""
    read = set()
    for path in [*SOURCES, *sorted((ROOT / "tests").rglob("*.py"))]:
        read |= env_variables(path)
    unread = sorted(documented_variables() - read)
    assert not unread, f"in docs/configuration.md but read nowhere: {unread}"


# -- commands -------------------------------------------------------------------------------


def _commands(group: click.Group, prefix: str = ""):
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from _commands(command, full + " ")
        else:
            yield full, command


def project_commands(app) -> list[str]:
    """The project's `flask` commands, and `db upgrade`: other extensions' own commands
    (Flask-Migrate's other `db` commands, Flask-Limiter's `limiter`) are theirs to
    document, and Flask's `run`, `shell` and `routes` are not on `app.cli`."""
    return [
        name
        for name, command in _commands(app.cli)
        if command.callback.__module__.startswith("paymentapp") or name == "db upgrade"
    ]


def _text(path: Path) -> str:
    return " ".join(path.read_text().split())  # a command may wrap across lines


def test_every_flask_command_is_in_deployment_md(app):
    commands = project_commands(app)
    assert {"mpesa reconcile", "webhooks deliver", "db upgrade"} <= set(commands)
    text = _text(DOCS / "deployment.md")
    missing = [name for name in commands if f"flask --app wsgi {name}" not in text]
    assert not missing, f"not in docs/deployment.md's command list: {missing}"


# -- routes ---------------------------------------------------------------------------------

PLACEHOLDER = r"(?:<[A-Za-z_:]*>|\{[A-Za-z_]*\})"  # <id>, <order_id>, {id}
SIMULATOR = "/_simulator"
# The simulator's own pages and test API; its other routes are Daraja's paths under it
SIMULATOR_OWN = ("/_simulator/api/", "/_simulator/phone")


def _pattern(rule: str) -> re.Pattern:
    """`rule`'s path as the docs may write it: any placeholder name for a variable part
    (a `<path:…>` part may also be shown as a real path), and not the start of a longer
    path (`/api/orders` is not documented by `/api/orders/<id>`); `/` only as `` `/` ``."""
    if rule == "/":
        return re.compile(r"`/`")
    parts = re.split(r"(<[^>]+>)", rule.rstrip("/"))
    regex = ""
    for part in parts:
        if part.startswith("<path:"):
            regex += rf"(?:{PLACEHOLDER}|[\w.\-/]+)"
        elif part.startswith("<"):
            regex += PLACEHOLDER
        else:
            regex += re.escape(part)
    return re.compile(regex + r"(?![\w/<{-]|\.\w)")


def public_paths(app) -> dict[str, list[str]]:
    """Each public route's path, with the paths any of which documents it: every rule but
    static files and the dashboard's form actions (rules under /admin that answer no GET),
    a callback rule as one URL per kind, a simulated Daraja API also by Daraja's path."""
    paths: dict[str, list[str]] = {}
    for rule in app.url_map.iter_rules():
        path = rule.rule
        if rule.endpoint == "static":
            continue
        if path.startswith("/admin") and "GET" not in rule.methods:
            continue
        if path == "/callbacks/<path:kind_path>/<token>":
            for kind in KINDS.values():
                paths[f"/callbacks/{kind.path}/<token>"] = [f"/callbacks/{kind.path}/<token>"]
            continue
        choices = [path]
        if path.startswith(SIMULATOR) and not path.startswith(SIMULATOR_OWN):
            choices.append(path.removeprefix(SIMULATOR))  # docs/daraja.md's path
        paths[path.rstrip("/") or "/"] = choices
    return paths


def test_the_route_patterns_match_as_the_docs_write_them():
    assert _pattern("/api/orders/<order_id>").search("GET `/api/orders/<id>` answers")
    assert _pattern("/api/orders/<order_id>").search("GET /api/orders/{id}")
    assert not _pattern("/api/orders/<order_id>").search("`/api/orders/<id>/status`")
    assert not _pattern("/api/orders").search("`/api/orders/<id>`")
    assert _pattern("/api/orders").search("curl http://127.0.0.1:5000/api/orders?q=1")
    assert not _pattern("/admin/audit").search("`/admin/audit.csv`")
    assert _pattern("/admin").search("open http://127.0.0.1:5000/admin.")
    assert _pattern("/vendor/<path:name>").search("at `/vendor/socket.io.min.js`")
    assert _pattern("/").search("the pages (`/`, `/pay/<id>`)")


def test_every_public_route_is_in_the_docs(app):
    text = "\n".join(path.read_text() for path in sorted(DOCS.glob("*.md")))
    paths = public_paths(app)
    assert {"/api/orders", "/healthz", "/metrics", "/callbacks/stk/<token>"} <= set(paths)
    missing = [
        path
        for path, choices in sorted(paths.items())
        if not any(_pattern(choice).search(text) for choice in choices)
    ]
    assert not missing, f"routes no page of docs/ names: {missing}"


# -- the snapshot -------------------------------------------------------------------------


def _shape(value):
    """The keys of a JSON value, nested (a list by its first item)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def test_the_snapshot_in_realtime_md_has_the_real_fields(client, make_order, make_payment):
    text = (DOCS / "realtime.md").read_text()
    example = re.search(r"## The snapshot.*?```json\n(.*?)```", text, re.S).group(1)
    order = make_order(1500)
    make_payment(order)
    snapshot = client.get(
        f"/api/orders/{order['id']}/status", headers={"X-Order-Token": order["client_token"]}
    ).get_json()
    assert _shape(json.loads(example)) == _shape(snapshot)
