"""Side-by-side callback benchmark (`make bench`): money → browser under load.

Servers (bench/callbench/servers.py), each started and stopped here, one at a time, each
run on a fresh database and a fresh Socket.IO Redis channel, each writing its output to
a pipe that a separate reader drains to the run's log file:

- paymentapp: `gunicorn -c gunicorn.conf.py wsgi:app`, 2 gevent workers, PostgreSQL,
  Redis message queue, in sandbox mode against a fake Daraja (orders inserted through the
  app's models, or with `--seed api` made with their STK pushes through its API, before
  the measured part), LOG_LEVEL=INFO and the access log on; real Daraja STK success
  callbacks on `/callbacks/stk/<token>`;
- paymentapp-warning: the same with LOG_LEVEL=WARNING and no access log;
- floor: bench/peers/floor.py, bare Flask-SocketIO on the same gunicorn worker class,
  2 workers, same Redis queue, no database (`POST /cb/<order_id>` → emit);
- node-pg: bench/peers/node-pg/server.mjs, Express + socket.io + pg, 1 process, one
  transaction per callback (store body, lock order, mark paid), then emit; the same
  three log lines per payment as paymentapp at INFO.

The load generator (bench/load/loadgen.mjs, Node, websocket transport only) opens N
dialogs (one connection, one order each), then posts one success callback per order at
a fixed offered rate with 16 concurrent keep-alive senders, and measures. See
bench/README.md for every number.

    .venv/bin/python bench/callbacks.py                        # the full side-by-side
    .venv/bin/python bench/callbacks.py --quick                # a few minutes
    .venv/bin/python bench/callbacks.py --servers paymentapp --dialogs 500 --rates 100 --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callbench import servers, tables  # noqa: E402
from callbench.procs import (  # noqa: E402
    Neighbour,
    cpu_s,
    gc_report,
    log,
    machine_busy_s,
    stop_group,
    wait_quiet,
)

LOADGEN = ROOT / "bench" / "load" / "loadgen.mjs"
HEADLINE = "paymentapp"  # its sweep keeps --runs; the others' may use --sweep-runs
NOISY_SERVERS = ("paymentapp", "node-pg")
DEFAULT_SERVERS = "paymentapp,paymentapp-warning,floor,node-pg"
QUICK = {"servers": "paymentapp,node-pg", "dialogs": 2000, "rates": "100", "runs": 1}


# -- one run -----------------------------------------------------------------------------


def run_once(name: str, dialogs: int, rate: float, posts: int, args, noisy=False) -> dict:
    tag = uuid.uuid4().hex[:8]
    background = wait_quiet(args.wait_quiet)
    if background > 30:
        log(f"  the machine is busy before this run ({background:.0f}% of a core): figures skew")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=args.workdir))
    with contextlib.ExitStack() as stack:
        setup = servers.setup(name, stack, workdir, dialogs, tag, args.seed)
        server = setup.server
        stack.callback(server.stop)
        server.start()
        seed_s = None
        if setup.seed is not None:  # orders and pushes through the running server's API
            started = time.monotonic()
            setup.seed()
            seed_s = round(time.monotonic() - started, 1)
        daraja_calls = setup.daraja.calls if setup.daraja else 0
        time.sleep(0.5)
        neighbour = Neighbour(workdir) if noisy else None
        if neighbour is not None:
            stack.callback(neighbour.stop)
        result = load(server, setup, dialogs, rate, posts, args, stack, tag, neighbour)
        result.update(
            server=name,
            noisy=noisy,
            dialogs=dialogs,
            seed_s=seed_s,
            server_pids=server.pids(),
            server_log=str(server.log_path),
            worker_connections=(
                servers.worker_connections(dialogs) if setup.probe_dir is not None else None
            ),
            db=servers.db_check(setup.check),
            # calls the app made to the fake Daraja while measured (none expected)
            daraja_calls=setup.daraja.calls - daraja_calls if setup.daraja else None,
            background_pct=background,
        )
    # stopped (workers exited: probe files written; the drain has every line)
    server_log = server.log()
    result.update(
        server_error_lines=len(server.error_lines()),
        server_log_lines=server_log.count("\n"),
        server_log_bytes=len(server_log.encode()),
    )
    if setup.probe_dir is not None:
        result["gc"] = gc_report(setup.probe_dir, result["server_pids"], result.pop("window"))
        result["gc_missing"] = result["gc"] is None
    else:
        result.pop("window")
    if not args.keep_logs and not result["server_error_lines"]:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def load(server, setup, dialogs, rate, posts, args, stack, tag, neighbour) -> dict:
    """Run the load generator against the started server: connect every dialog, read RSS,
    then (with the neighbour running, if any) post the callbacks; its RESULT plus RSS, CPU
    and the wall-clock window (for the GC probe)."""
    rss_before = server.rss_kib()
    cmd = [
        servers.node(), str(LOADGEN), "--url", server.url, "--orders", str(setup.orders),
        "--callback-path", setup.callback_path, "--dialogs", str(dialogs),
        "--posts", str(posts), "--rate", str(rate), "--senders", str(args.senders),
        "--connect-concurrency", str(args.connect_concurrency),
        "--drain-ms", str(args.drain_ms), "--tag", tag, "--wait-go",
    ]  # fmt: skip
    window_start = time.time()
    loadgen = subprocess.Popen(
        cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    stack.callback(stop_group, loadgen, 5)
    budget = 120 + dialogs / 20 + posts / rate * 4 + args.drain_ms / 1000
    timer = threading.Timer(budget, lambda: stop_group(loadgen, 1))
    timer.start()
    stack.callback(timer.cancel)
    connected = result = cpu = mark = noise = None
    rss_after = 0
    for line in loadgen.stdout:
        if line.startswith("CONNECTED "):
            connected = json.loads(line.split(" ", 1)[1])
            time.sleep(1.0)  # let the last acks' garbage settle before reading RSS
            rss_after = server.rss_kib()
            if neighbour is not None:
                neighbour.start()
            mark = (time.monotonic(), server.cpu_s(), cpu_s(loadgen.pid), machine_busy_s())
            loadgen.stdin.write("go\n")
            loadgen.stdin.flush()
        elif line.startswith("RESULT "):
            result = json.loads(line.split(" ", 1)[1])
            cpu = cpu_phase(server, loadgen, mark, result["posts"])
            if neighbour is not None:
                noise = neighbour.stop()
    window_end = time.time()
    loadgen.wait()
    if result is None:
        raise RuntimeError(
            f"{server.name}: the load generator gave no result (exit {loadgen.returncode}); "
            f"connected={connected}; server log {server.log_path}"
        )
    time.sleep(0.3)
    result.update(
        rss_before_kib=rss_before,
        rss_after_kib=rss_after,
        rss_per_dialog_kib=round((rss_after - rss_before) / max(1, result["connected"]), 2),
        cpu=cpu,
        window=(window_start, window_end),
    )
    if noise is not None:
        result["noise"] = noise
    return result


def cpu_phase(server, loadgen, mark, posts: int) -> dict:
    """CPU over the callback phase (send + drain), from `mark` taken at its start."""
    wall = time.monotonic() - mark[0]
    server_s = server.cpu_s() - mark[1]
    return {
        "window_s": round(wall, 2),
        # per cent of one core
        "server_pct": round(server_s / wall * 100, 1),
        "loadgen_pct": round((cpu_s(loadgen.pid) - mark[2]) / wall * 100, 1),
        "machine_pct": round((machine_busy_s() - mark[3]) / wall * 100, 1),
        "server_ms_per_callback": round(server_s * 1000 / max(1, posts), 2),
    }


# -- main --------------------------------------------------------------------------------


def numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one run, 2,000 dialogs, 100/s, paymentapp and node-pg (other options still apply)",
    )
    parser.add_argument("--servers", default=DEFAULT_SERVERS)
    parser.add_argument("--dialogs", type=int, default=2000)
    parser.add_argument("--rates", default="100", help="rates measured on every server")
    parser.add_argument("--sweep", default="", help="e.g. 50,100,200,300,400,500,600")
    parser.add_argument(
        "--sweep-servers", default=DEFAULT_SERVERS, help="which servers the sweep runs on"
    )
    parser.add_argument(
        "--sweep-runs",
        type=int,
        default=None,
        help="runs per sweep rate not in --rates, for servers other than paymentapp "
        "(default: --runs)",
    )
    parser.add_argument(
        "--full-sweep",
        action="store_true",
        help="keep sweeping after a rate fails (default: skip the higher rates)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--noisy",
        action="store_true",
        help="also paymentapp and node-pg at the first rate with a noisy neighbour",
    )
    parser.add_argument(
        "--seed",
        choices=("models", "api"),
        default="models",
        help="paymentapp's orders: inserted through the app's models before the server "
        "starts (default), or made with their STK pushes through its API (slow: ~40 ms "
        "of server CPU per order)",
    )
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
    if "--quick" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**QUICK)  # explicit options still win
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in args.servers:
        if name not in servers.VARIANTS:
            parser.error(f"unknown server {name!r} (one of {', '.join(servers.VARIANTS)})")
    args.rates = numbers(args.rates) or [100.0]
    args.sweep = numbers(args.sweep)
    args.sweep_servers = [s.strip() for s in args.sweep_servers.split(",")]
    if args.sweep_runs is None:
        args.sweep_runs = args.runs
    return args


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def measure(results, all_runs, row, name, rate, runs, args, noisy=False) -> None:
    """`runs` runs of server `name` at `rate`, recorded under `row`."""
    for run in range(1, runs + 1):
        log(f"{row}: {args.dialogs} dialogs, {rate:g}/s, run {run}/{runs}")
        result = run_once(name, args.dialogs, rate, args.dialogs, args, noisy)
        result["run"] = run
        all_runs.append(result)
        results.setdefault(row, {}).setdefault(rate, []).append(result)
        gc = result.get("gc") or {}
        log(
            f"  achieved {result['achieved_rate']}/s, answer p50/p99 "
            f"{result['answer_ms']['p50']}/{result['answer_ms']['p99']} ms, event "
            f"p50/p99 {result['event_ms']['p50']}/{result['event_ms']['p99']} ms, "
            f"connect {result['connect_wall_s']} s, "
            f"{result['rss_per_dialog_kib']} KiB/dialog, "
            f"{result['cpu']['server_ms_per_callback']} ms CPU/callback"
            + (f", {gc['full_gcs']} full GCs" if gc else "")
            + (f" (seeded through the API in {result['seed_s']} s)" if result["seed_s"] else "")
            + (f"; {tables.problems([result])}" if tables.problems([result]) else "")
        )


def run_server(results, all_runs, name, args) -> None:
    """Every rate of one server (its sweep included), then its noisy runs."""
    swept = set(args.sweep) if name in args.sweep_servers else set()
    failed_at = None
    for rate in sorted(set(args.rates) | swept):
        if failed_at is not None and rate not in args.rates and not args.full_sweep:
            log(f"{name}: skipping {rate:g}/s ({failed_at:g}/s was not sustained)")
            continue
        runs = args.runs if rate in args.rates or name == HEADLINE else args.sweep_runs
        measure(results, all_runs, name, name, rate, runs, args)
        done = results.get(name, {}).get(rate)
        if rate in swept and done and not tables.passes(done, rate) and failed_at is None:
            failed_at = rate
    if args.noisy and name in NOISY_SERVERS:
        row = f"{name}{tables.NOISY}"
        measure(results, all_runs, row, name, args.rates[0], args.runs, args, noisy=True)


def report(results, big, all_runs, args, elapsed: float) -> None:
    out = [f"## Callback benchmark ({elapsed / 60:.1f} min)", "", tables.main_table(results, args)]
    for row in results:
        if len(results[row]) > 1:
            out += ["", tables.sweep_table(row, results[row], args)]
    if big is not None:
        title = f"Big run ({args.big_dialogs:,} dialogs on {HEADLINE}):"
        out += ["", title, "", tables.big_table(big, args.rates[0])]
    print("\n".join(out), flush=True)
    if args.json:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        data = {"args": options, "elapsed_s": round(elapsed, 1), "runs": all_runs}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1))


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
            run_server(results, all_runs, name, args)
        if args.big:
            rate = args.rates[0]
            log(
                f"big: {HEADLINE}, {args.big_dialogs} dialogs, "
                f"{args.big_posts} callbacks at {rate:g}/s"
            )
            big = run_once(HEADLINE, args.big_dialogs, rate, args.big_posts, args)
            big["run"] = "big"
            all_runs.append(big)
    except KeyboardInterrupt:
        log("interrupted: every server was stopped; partial results follow")
    finally:
        report(results, big, all_runs, args, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
