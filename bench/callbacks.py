"""Side-by-side callback benchmark (`make bench`): money → browser under load.

Three servers, each started and stopped here, one at a time, each run on a fresh
database and a fresh Socket.IO Redis channel:

- paymentapp: `gunicorn -c gunicorn.conf.py wsgi:app`, 2 gevent workers, PostgreSQL,
  Redis message queue; real Daraja STK success callbacks on `/callbacks/stk/<token>`;
- floor: bench/peers/floor.py, bare Flask-SocketIO on the same gunicorn worker class,
  2 workers, same Redis queue, no database (`POST /cb/<order_id>` → emit);
- node-pg: bench/peers/node-pg/server.mjs, Express + socket.io + pg, 1 process, one
  transaction per callback (store body, lock order, mark paid), then emit.

The load generator (bench/load/loadgen.mjs, Node, websocket transport only) opens N
dialogs (one connection, one order each), then posts one success callback per order at
a fixed offered rate with 16 concurrent keep-alive senders, and measures. See
bench/README.md for every number.

    .venv/bin/python bench/callbacks.py                        # the full side-by-side
    .venv/bin/python bench/callbacks.py --servers paymentapp --dialogs 500 --rates 100 --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from base64 import urlsafe_b64encode
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402

BENCH = ROOT / "bench"
LOADGEN = BENCH / "load" / "loadgen.mjs"
SEED_PAYMENTAPP = BENCH / "load" / "seed_paymentapp.py"
NODE_PEER = BENCH / "peers" / "node-pg" / "server.mjs"
NODE_SCHEMA = BENCH / "peers" / "node-pg" / "schema.sql"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
CALLBACK_TOKEN = "bench-callback-token-0123"
GUNICORN_WORKERS = 2
DEFAULT_WORKER_CONNECTIONS = 10_000  # gunicorn.conf.py's default
SERVERS = ("paymentapp", "floor", "node-pg")
# The Python servers' log level; BENCH_LOG_LEVEL=INFO measures with paymentapp's
# structured payment lines written (to the run's log file), as in production.
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
LABELS = {
    "paymentapp": "paymentapp (gunicorn, 2 gevent workers, PostgreSQL, Redis)",
    "floor": "floor: bare Flask-SocketIO (same worker, 2 workers, Redis, no DB)",
    "node-pg": "node-pg: Express + socket.io + pg (1 process)",
}
RULE = (
    "highest rate sustained = the highest offered rate of the sweep at which the achieved "
    "rate is >= 95% of the offered rate and the callback answer p99 is <= 50 ms "
    "(medians over the runs)"
)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine (all cores) has been busy, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def wait_quiet(limit_s: float, threshold_pct: float = 30.0) -> float:
    """Wait (at most `limit_s`) until the machine is nearly idle for a second: other work
    on the 2 shared cores (someone's tests) skews every figure. Returns the last busy %
    (100 = one core) seen, which each run records as `background_pct`."""
    deadline = time.monotonic() + limit_s
    while True:
        before = machine_busy_s()
        time.sleep(1.0)
        busy = (machine_busy_s() - before) * 100
        if busy <= threshold_pct or time.monotonic() >= deadline:
            return round(busy, 1)


class Server:
    """A server process in its own session (so it and its workers can be stopped as one
    process group); `measured` says whose RSS counts: the gunicorn master's children
    (its workers) or the process itself (node)."""

    def __init__(self, name: str, cmd: list[str], env: dict, port: int, logdir: Path, measured):
        self.name, self.cmd, self.env, self.port = name, cmd, env, port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = logdir / f"{name}-{port}.log"
        self.measured = measured  # "children" or "self"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer /healthz:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        if self.measured == "children":  # every worker booted, not only the first
            deadline = time.monotonic() + 30
            while len(children(self.proc.pid)) < GUNICORN_WORKERS:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: workers did not start")
                time.sleep(0.1)
        return self

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return children(self.proc.pid) if self.measured == "children" else [self.proc.pid]

    def rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.pids())

    def cpu_s(self) -> float:
        return sum(cpu_s(pid) for pid in self.pids())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def error_lines(self) -> list[str]:
        markers = ("Traceback", "[ERROR]", " ERROR ", "error:", "failed:")
        return [line for line in self.log().splitlines() if any(m in line for m in markers)]

    def stop(self) -> None:
        stop_group(self.proc, grace=20)


def stop_group(proc: subprocess.Popen | None, grace: float = 10) -> None:
    """SIGTERM the process group we started (its leader's pid), then SIGKILL it."""
    if proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):  # stragglers (workers) of the group
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


# -- the three servers -------------------------------------------------------------------


def worker_connections(dialogs: int) -> int:
    # One worker may accept every dialog (accepts are uneven): size each for all of them.
    return max(DEFAULT_WORKER_CONNECTIONS, dialogs + 1000)


def gunicorn_env(port: int, dialogs: int, extra: dict) -> dict:
    return {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(GUNICORN_WORKERS),
        "WORKER_CONNECTIONS": str(worker_connections(dialogs)),
        "ACCESS_LOG": "/dev/null",
        "LOG_LEVEL": LOG_LEVEL,
        **extra,
    }


def setup_paymentapp(stack, workdir: Path, dialogs: int, tag: str):
    database_url = services.create_pg_database()
    stack.callback(services.drop_pg_database, database_url)
    app_env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": services.require_redis(),
        "SOCKETIO_CHANNEL": f"bench-{tag}",
        "SECRET_KEY": SECRET_KEY,
        "MPESA_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "ACCESS_LOG": "/dev/null",
        "LOG_LEVEL": LOG_LEVEL,
    }
    env = {**os.environ, **app_env}
    py = sys.executable
    subprocess.run(
        [py, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    orders = workdir / "orders.json"
    subprocess.run(
        [py, str(SEED_PAYMENTAPP), str(dialogs), str(orders), tag],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )  # fmt: skip
    port = services.free_port()
    cmd = [py, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    server = Server(
        "paymentapp", cmd, gunicorn_env(port, dialogs, app_env), port, workdir, "children"
    )
    check = {"kind": "paymentapp", "url": database_url}
    return server, orders, f"/callbacks/stk/{CALLBACK_TOKEN}", check


def setup_floor(stack, workdir: Path, dialogs: int, tag: str):
    orders = workdir / "orders.json"
    orders.write_text(
        json.dumps(
            [
                {"order_id": f"o{tag}{i}", "token": "-", "checkout_id": f"c{i}", "amount": 10}
                for i in range(dialogs)
            ]
        )
    )
    port = services.free_port()
    extra = {"REDIS_URL": services.require_redis(), "SOCKETIO_CHANNEL": f"bench-floor-{tag}"}
    cmd = [
        sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
        "--pythonpath", str(BENCH / "peers"), "floor:app",
    ]  # fmt: skip
    server = Server("floor", cmd, gunicorn_env(port, dialogs, extra), port, workdir, "children")
    return server, orders, "/cb/{order_id}", None


def node_token(order_id: str) -> str:
    digest = hmac.new(SECRET_KEY.encode(), order_id.encode(), hashlib.sha256).digest()
    return urlsafe_b64encode(digest).rstrip(b"=").decode()


def setup_node(stack, workdir: Path, dialogs: int, tag: str):
    database_url = services.create_pg_database()
    stack.callback(services.drop_pg_database, database_url)
    plain_url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    rows = [(f"ord_{tag}_{i}", f"ws_CO_{tag}_{i:06d}", 10 + i % 90) for i in range(dialogs)]
    with psycopg.connect(plain_url) as conn:
        conn.execute(NODE_SCHEMA.read_text())
        with (
            conn.cursor() as cur,
            cur.copy("COPY orders (id, checkout_request_id, amount) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
    orders = workdir / "orders.json"
    orders.write_text(
        json.dumps(
            [
                {"order_id": oid, "token": node_token(oid), "checkout_id": cid, "amount": amount}
                for oid, cid, amount in rows
            ]
        )
    )
    port = services.free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATABASE_URL": plain_url,
        "BENCH_SECRET": SECRET_KEY,
        "CALLBACK_TOKEN": CALLBACK_TOKEN,
    }
    server = Server("node-pg", [node(), str(NODE_PEER)], env, port, workdir, "self")
    check = {"kind": "node-pg", "url": plain_url}
    return server, orders, f"/callbacks/stk/{CALLBACK_TOKEN}", check


SETUP = {"paymentapp": setup_paymentapp, "floor": setup_floor, "node-pg": setup_node}


def node() -> str:
    found = shutil.which("node")
    if not found:
        raise SystemExit("node is not installed (the load generator and the Node peer need it)")
    return found


def db_check(check: dict | None) -> dict:
    """After a run: how many orders the database says are paid, callbacks by outcome."""
    if check is None:
        return {}
    url = check["url"].replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        paid = conn.execute("SELECT count(*) FROM orders WHERE status = 'paid'").fetchone()[0]
        outcomes = dict(
            conn.execute("SELECT outcome, count(*) FROM callback_records GROUP BY outcome")
        )
    return {"orders_paid": paid, "callback_outcomes": outcomes}


# -- one run -----------------------------------------------------------------------------


def run_once(name: str, dialogs: int, rate: float, posts: int, args) -> dict:
    tag = uuid.uuid4().hex[:8]
    background = wait_quiet(args.wait_quiet)
    if background > 30:
        log(f"  the machine is busy before this run ({background:.0f}% of a core): figures skew")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=args.workdir))
    loadgen: subprocess.Popen | None = None
    with contextlib.ExitStack() as stack:
        server, orders, cb_path, check = SETUP[name](stack, workdir, dialogs, tag)
        stack.callback(server.stop)
        server.start()
        time.sleep(0.5)
        rss_before = server.rss_kib()
        cmd = [
            node(), str(LOADGEN), "--url", server.url, "--orders", str(orders),
            "--callback-path", cb_path, "--dialogs", str(dialogs), "--posts", str(posts),
            "--rate", str(rate), "--senders", str(args.senders),
            "--connect-concurrency", str(args.connect_concurrency),
            "--drain-ms", str(args.drain_ms), "--tag", tag, "--wait-go",
        ]  # fmt: skip
        loadgen = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        stack.callback(stop_group, loadgen, 5)
        budget = 120 + dialogs / 20 + posts / rate * 4 + args.drain_ms / 1000
        timer = threading.Timer(budget, lambda: stop_group(loadgen, 1))
        timer.start()
        stack.callback(timer.cancel)
        connected = result = cpu = mark = None
        rss_after = 0
        for line in loadgen.stdout:
            if line.startswith("CONNECTED "):
                connected = json.loads(line.split(" ", 1)[1])
                time.sleep(1.0)  # let the last acks' garbage settle before reading RSS
                rss_after = server.rss_kib()
                mark = (time.monotonic(), server.cpu_s(), cpu_s(loadgen.pid), machine_busy_s())
                loadgen.stdin.write("go\n")
                loadgen.stdin.flush()
            elif line.startswith("RESULT "):
                result = json.loads(line.split(" ", 1)[1])
                wall = time.monotonic() - mark[0]
                cpu = {
                    "window_s": round(wall, 2),
                    # per cent of one core over the callback phase (send + drain)
                    "server_pct": round((server.cpu_s() - mark[1]) / wall * 100, 1),
                    "loadgen_pct": round((cpu_s(loadgen.pid) - mark[2]) / wall * 100, 1),
                    "machine_pct": round((machine_busy_s() - mark[3]) / wall * 100, 1),
                    "server_ms_per_callback": round(
                        (server.cpu_s() - mark[1]) * 1000 / max(1, result["posts"]), 2
                    ),
                }
        loadgen.wait()
        if result is None:
            raise RuntimeError(
                f"{name}: the load generator gave no result (exit {loadgen.returncode}); "
                f"connected={connected}; server log {server.log_path}"
            )
        time.sleep(0.3)
        result.update(
            server=name,
            dialogs=dialogs,
            rss_before_kib=rss_before,
            rss_after_kib=rss_after,
            rss_per_dialog_kib=round((rss_after - rss_before) / max(1, result["connected"]), 2),
            server_pids=server.pids(),
            server_error_lines=len(server.error_lines()),
            server_log=str(server.log_path),
            worker_connections=worker_connections(dialogs) if name != "node-pg" else None,
            db=db_check(check),
            cpu=cpu,
            background_pct=background,
        )
    if not args.keep_logs and not result["server_error_lines"]:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- aggregation and tables --------------------------------------------------------------


def med(runs: list[dict], *path: str) -> float | None:
    values = []
    for run in runs:
        value = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(value)
    return statistics.median(values) if values else None


def problems(runs: list[dict]) -> str:
    """Errors of all runs at one rate, summed: '' when there were none."""
    out = []
    for label, count in [
        ("connect errors", sum(r["dialogs"] - r["connected"] for r in runs)),
        ("HTTP errors", sum(sum(r["http_errors"].values()) for r in runs)),
        ("missing events", sum(r["events_missing"] for r in runs)),
        ("stray events", sum(r["stray_events"] for r in runs)),
        ("disconnects", sum(r["disconnects_during"] for r in runs)),
        ("server error lines", sum(r["server_error_lines"] for r in runs)),
    ]:
        if count:
            out.append(f"{count} {label}")
    return ", ".join(out)


def passes(runs: list[dict], rate: float) -> bool:
    achieved, p99 = med(runs, "achieved_rate"), med(runs, "answer_ms", "p99")
    return achieved is not None and achieved >= 0.95 * rate and p99 is not None and p99 <= 50


def fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def main_table(results: dict, args) -> str:
    rate = args.rates[0]
    lines = [
        f"| server | {fmt(rate, 0)} callbacks/s: event latency p50 / p99 (max) "
        f"| callback answer p50 / p99 | highest rate sustained "
        f"| connect+subscribe {args.dialogs:,} dialogs | RSS per dialog |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for name in args.servers:
        by_rate = results.get(name, {})
        runs = by_rate.get(rate, [])
        if not runs:
            continue
        sweep = [r for r in sorted(by_rate) if r in args.sweep]
        passed = [r for r in sweep if passes(by_rate[r], r)]
        if not sweep:
            best = "not swept"
        elif passed:
            best = f"{fmt(max(passed), 0)}/s"
            if max(passed) == max(args.sweep):
                best = f"≥ {best}"
        else:
            best = f"< {fmt(min(sweep), 0)}/s"
        if sweep:
            peak = max(med(by_rate[r], "achieved_rate") or 0 for r in sweep)
            best += f" (peak achieved {fmt(peak, 0)}/s)"
        lines.append(
            f"| {LABELS[name]} "
            f"| {fmt(med(runs, 'event_ms', 'p50'))} / {fmt(med(runs, 'event_ms', 'p99'))} ms "
            f"({fmt(med(runs, 'event_ms', 'max'))}) "
            f"| {fmt(med(runs, 'answer_ms', 'p50'))} / {fmt(med(runs, 'answer_ms', 'p99'))} ms "
            f"| {best} "
            f"| {fmt(med(runs, 'connect_wall_s'), 2)} s "
            f"| {fmt(med(runs, 'rss_per_dialog_kib'), 1)} KiB |"
        )
        if problem := problems(runs):
            notes.append(f"- {name} at {fmt(rate, 0)}/s ({len(runs)} runs): {problem}")
    runs_note = f"median of {args.runs} runs each" if args.runs > 1 else "1 run each"
    every = [r for by_rate in results.values() for runs in by_rate.values() for r in runs]
    if every:
        busy = sorted(r["background_pct"] for r in every)
        runs_note += (
            f"; other load on the machine just before a run: median {busy[len(busy) // 2]:.0f}%,"
            f" max {busy[-1]:.0f}% of a core"
        )
    lines.append("")
    lines.append(f"{runs_note}; {os.cpu_count()} CPU cores shared by servers, databases and load.")
    lines.append(RULE + ".")
    lines.extend(notes or ["- no connect errors, HTTP errors, missing events or server errors"])
    return "\n".join(lines)


def sweep_table(name: str, by_rate: dict, args) -> str:
    lines = [
        f"{LABELS[name]}, {args.dialogs:,} dialogs:",
        "",
        "| offered/s | achieved/s | answer p50 / p99 | event p50 / p99 (max) "
        "| sender late p99 | server CPU per callback | CPU: server / loadgen / machine "
        "| sustained | problems |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in sorted(by_rate):
        runs = by_rate[rate]
        lines.append(
            f"| {fmt(rate, 0)} | {fmt(med(runs, 'achieved_rate'))} "
            f"| {fmt(med(runs, 'answer_ms', 'p50'))} / {fmt(med(runs, 'answer_ms', 'p99'))} ms "
            f"| {fmt(med(runs, 'event_ms', 'p50'))} / {fmt(med(runs, 'event_ms', 'p99'))} ms "
            f"({fmt(med(runs, 'event_ms', 'max'))}) "
            f"| {fmt(med(runs, 'sender_late_ms', 'p99'))} ms "
            f"| {fmt(med(runs, 'cpu', 'server_ms_per_callback'), 2)} ms "
            f"| {fmt(med(runs, 'cpu', 'server_pct'), 0)} "
            f"/ {fmt(med(runs, 'cpu', 'loadgen_pct'), 0)} "
            f"/ {fmt(med(runs, 'cpu', 'machine_pct'), 0)} % "
            f"| {'yes' if passes(runs, rate) else 'no'} | {problems(runs) or '–'} |"
        )
    return "\n".join(lines)


def big_table(run: dict, rate: float) -> str:
    return "\n".join(
        [
            f"| paymentapp, {run['dialogs']:,} dialogs connected "
            f"| connected | connect+subscribe | {run['posts']:,} callbacks at {fmt(rate, 0)}/s: "
            f"event p50 / p99 (max) | answer p50 / p99 | achieved/s | RSS per dialog |",
            "|---|---|---|---|---|---|---|",
            f"| WORKER_CONNECTIONS={run['worker_connections']} "
            f"| {run['connected']:,} | {run['connect_wall_s']:.2f} s "
            f"| {fmt(run['event_ms']['p50'])} / {fmt(run['event_ms']['p99'])} ms "
            f"({fmt(run['event_ms']['max'])}) "
            f"| {fmt(run['answer_ms']['p50'])} / {fmt(run['answer_ms']['p99'])} ms "
            f"| {fmt(run['achieved_rate'])} | {fmt(run['rss_per_dialog_kib'])} KiB |",
            "",
            f"problems: {problems([run]) or 'none'}",
        ]
    )


# -- main --------------------------------------------------------------------------------


def numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--dialogs", type=int, default=2000)
    parser.add_argument("--rates", default="100", help="rates measured on every server")
    parser.add_argument("--sweep", default="", help="e.g. 50,100,200,300,400")
    parser.add_argument(
        "--sweep-servers",
        default="paymentapp,floor,node-pg",
        help="which servers the sweep runs on",
    )
    parser.add_argument(
        "--full-sweep",
        action="store_true",
        help="keep sweeping after a rate fails (default: skip the higher rates)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also the 10,000-dialog paymentapp run")
    parser.add_argument("--big-dialogs", type=int, default=10_000)
    parser.add_argument(
        "--big-posts", type=int, default=2000, help="callbacks posted in the big run"
    )
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--drain-ms", type=int, default=10_000)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=15,
        help="before each run wait up to this many seconds for the machine to be idle",
    )
    parser.add_argument("--json", type=Path, help="write every run's numbers here")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--workdir", default=None, help="for logs and seed files (default: /tmp)")
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r} (one of {', '.join(SERVERS)})")
    args.rates = numbers(args.rates) or [100.0]
    args.sweep = numbers(args.sweep)
    args.sweep_servers = [s.strip() for s in args.sweep_servers.split(",")]
    return args


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started with SIGINT ignored (`&`)
    started = time.monotonic()
    results: dict[str, dict[float, list[dict]]] = {}
    big = None
    all_runs: list[dict] = []
    try:
        for name in args.servers:
            swept = set(args.sweep) if name in args.sweep_servers else set()
            rates = sorted(set(args.rates) | swept)
            results[name] = {}
            failed_at = None
            for rate in rates:
                if failed_at is not None and rate not in args.rates and not args.full_sweep:
                    log(f"{name}: skipping {rate:g}/s ({failed_at:g}/s was not sustained)")
                    continue
                for run in range(1, args.runs + 1):
                    log(f"{name}: {args.dialogs} dialogs, {rate:g}/s, run {run}/{args.runs}")
                    result = run_once(name, args.dialogs, rate, args.dialogs, args)
                    result["run"] = run
                    all_runs.append(result)
                    results[name].setdefault(rate, []).append(result)
                    log(
                        f"  achieved {result['achieved_rate']}/s, answer p50/p99 "
                        f"{result['answer_ms']['p50']}/{result['answer_ms']['p99']} ms, event "
                        f"p50/p99 {result['event_ms']['p50']}/{result['event_ms']['p99']} ms, "
                        f"connect {result['connect_wall_s']} s, "
                        f"{result['rss_per_dialog_kib']} KiB/dialog"
                        + (f"; {problems([result])}" if problems([result]) else "")
                    )
                if (
                    rate in args.sweep
                    and not passes(results[name][rate], rate)
                    and failed_at is None
                ):
                    failed_at = rate
        if args.big:
            rate = args.rates[0]
            log(
                f"big: paymentapp, {args.big_dialogs} dialogs, "
                f"{args.big_posts} callbacks at {rate:g}/s"
            )
            big = run_once("paymentapp", args.big_dialogs, rate, args.big_posts, args)
            big["run"] = "big"
            all_runs.append(big)
    except KeyboardInterrupt:
        log("interrupted: every server was stopped; partial results follow")
    finally:
        elapsed = time.monotonic() - started
        out = [f"## Callback benchmark ({elapsed / 60:.1f} min)", "", main_table(results, args)]
        for name in args.servers:
            if len(results.get(name, {})) > 1:
                out += ["", sweep_table(name, results[name], args)]
        if big is not None:
            title = f"Big run ({args.big_dialogs:,} dialogs on paymentapp):"
            out += ["", title, "", big_table(big, args.rates[0])]
        print("\n".join(out), flush=True)
        if args.json:
            options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
            report = {"args": options, "elapsed_s": round(elapsed, 1), "runs": all_runs}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
