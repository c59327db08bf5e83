"""The callback benchmark's figures: medians over runs, the pass rule, the tables.

`results` maps a row (a server variant, or "<variant>, noisy") to {offered rate: [runs]}.
"""

from __future__ import annotations

import os
import statistics

from .servers import VARIANTS

RULE = (
    "highest rate sustained = the highest offered rate of the sweep at which the achieved "
    "rate is >= 95% of the offered rate and the callback answer p99 is <= 50 ms "
    "(medians over the runs)"
)
NOISY = ", noisy"


def label(row: str) -> str:
    if row.endswith(NOISY):
        return f"{row} neighbour (disk writer + CPU burner during the callbacks)"
    return VARIANTS[row].label


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
    for what, count in [
        ("connect errors", sum(r["dialogs"] - r["connected"] for r in runs)),
        ("HTTP errors", sum(sum(r["http_errors"].values()) for r in runs)),
        ("missing events", sum(r["events_missing"] for r in runs)),
        ("stray events", sum(r["stray_events"] for r in runs)),
        ("disconnects", sum(r["disconnects_during"] for r in runs)),
        ("server error lines", sum(r["server_error_lines"] for r in runs)),
        ("runs without GC probe files", sum(r.get("gc_missing", False) for r in runs)),
    ]:
        if count:
            out.append(f"{count} {what}")
    return ", ".join(out)


def passes(runs: list[dict], rate: float) -> bool:
    achieved, p99 = med(runs, "achieved_rate"), med(runs, "answer_ms", "p99")
    return achieved is not None and achieved >= 0.95 * rate and p99 is not None and p99 <= 50


def fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def full_gcs(runs: list[dict]) -> str:
    """'median count of full collections in the measured window (longest of any run, ms)'."""
    probed = [r["gc"] for r in runs if r.get("gc")]
    if not probed:
        return "–"
    count = statistics.median(g["full_gcs"] for g in probed)
    longest = max(g["full_gc_max_ms"] for g in probed)
    return f"{count:g} ({longest:.0f} ms)" if count else "0"


def ceiling(by_rate: dict, sweep: list[float]) -> str:
    """The 'highest rate sustained' cell: the rule's rate and the peak achieved."""
    swept = [r for r in sorted(by_rate) if r in sweep]
    if not swept:
        return "not swept"
    passed = [r for r in swept if passes(by_rate[r], r)]
    if passed:
        best = f"{fmt(max(passed), 0)}/s"
        if max(passed) == max(sweep):
            best = f"≥ {best}"
    else:
        best = f"< {fmt(min(swept), 0)}/s"
    peak = max(med(by_rate[r], "achieved_rate") or 0 for r in swept)
    return f"{best} (peak achieved {fmt(peak, 0)}/s)"


def p99_ratio(results: dict, over: str, under: str, rate: float) -> float | None:
    top = med(results.get(over, {}).get(rate, []), "event_ms", "p99")
    bottom = med(results.get(under, {}).get(rate, []), "event_ms", "p99")
    return top / bottom if top is not None and bottom else None


def main_table(results: dict, args) -> str:
    rate = args.rates[0]
    lines = [
        f"| server | {fmt(rate, 0)} callbacks/s: event latency p50 / p99 (max) "
        f"| callback answer p50 / p99 | highest rate sustained "
        f"| connect+subscribe {args.dialogs:,} dialogs | RSS per dialog "
        f"| server CPU per callback | full GCs (max ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in results:
        runs = results[row].get(rate, [])
        if not runs:
            continue
        if row.endswith(NOISY):
            ratio = p99_ratio(results, row, row[: -len(NOISY)], rate)
            best = f"p99 {fmt(ratio)}× its quiet p99" if ratio else "–"
        else:
            best = ceiling(results[row], args.sweep)
        lines.append(
            f"| {label(row)} "
            f"| {fmt(med(runs, 'event_ms', 'p50'))} / {fmt(med(runs, 'event_ms', 'p99'))} ms "
            f"({fmt(med(runs, 'event_ms', 'max'))}) "
            f"| {fmt(med(runs, 'answer_ms', 'p50'))} / {fmt(med(runs, 'answer_ms', 'p99'))} ms "
            f"| {best} "
            f"| {fmt(med(runs, 'connect_wall_s'), 2)} s "
            f"| {fmt(med(runs, 'rss_per_dialog_kib'), 1)} KiB "
            f"| {fmt(med(runs, 'cpu', 'server_ms_per_callback'), 2)} ms "
            f"| {full_gcs(runs)} |"
        )
        if problem := problems(runs):
            notes.append(f"- {row} at {fmt(rate, 0)}/s ({len(runs)} runs): {problem}")
    lines.append("")
    lines.append(
        f"{runs_note(results, args)}; {os.cpu_count()} CPU cores shared by servers, "
        "databases and load."
    )
    lines.append(RULE + ".")
    lines.extend(ratio_lines(results, args))
    lines.extend(notes or ["- no connect errors, HTTP errors, missing events or server errors"])
    return "\n".join(lines)


def runs_note(results: dict, args) -> str:
    note = f"median of {args.runs} runs each" if args.runs > 1 else "1 run each"
    if args.sweep and args.sweep_runs != args.runs:
        note += f" ({args.sweep_runs} per sweep rate outside --rates, except paymentapp)"
    every = [r for by_rate in results.values() for runs in by_rate.values() for r in runs]
    if every:
        busy = sorted(r["background_pct"] for r in every)
        note += (
            f"; other load on the machine just before a run: median {busy[len(busy) // 2]:.0f}%,"
            f" max {busy[-1]:.0f}% of a core"
        )
    return note


def ratio_lines(results: dict, args) -> list[str]:
    """INFO against WARNING logging, and what the noisy neighbour did."""
    lines = []
    for rate in args.rates:
        ratio = p99_ratio(results, "paymentapp", "paymentapp-warning", rate)
        if ratio is not None:
            lines.append(f"INFO p99 / WARNING p99 = {ratio:.1f} (paymentapp at {fmt(rate, 0)}/s)")
    noise = [
        run["noise"]
        for row, by_rate in results.items()
        if row.endswith(NOISY)
        for runs in by_rate.values()
        for run in runs
        if run.get("noise", {}).get("fsyncs")
    ]
    if noise:
        lines.append(
            "noisy neighbour during the callback phase: 64 KiB write + fsync (at most 50/s; "
            f"median {fmt(med(noise, 'fsyncs'), 0)} fsyncs, their p99 "
            f"{fmt(med(noise, 'fsync_ms', 'p99'))} ms) and a CPU burner at ~50% of a core"
        )
    return lines


def sweep_table(row: str, by_rate: dict, args) -> str:
    lines = [
        f"{label(row)}, {args.dialogs:,} dialogs:",
        "",
        "| offered/s | runs | achieved/s | answer p50 / p99 | event p50 / p99 (max) "
        "| sender late p99 | server CPU per callback | CPU: server / loadgen / machine "
        "| full GCs (max ms) | sustained | problems |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate in sorted(by_rate):
        runs = by_rate[rate]
        lines.append(
            f"| {fmt(rate, 0)} | {len(runs)} | {fmt(med(runs, 'achieved_rate'))} "
            f"| {fmt(med(runs, 'answer_ms', 'p50'))} / {fmt(med(runs, 'answer_ms', 'p99'))} ms "
            f"| {fmt(med(runs, 'event_ms', 'p50'))} / {fmt(med(runs, 'event_ms', 'p99'))} ms "
            f"({fmt(med(runs, 'event_ms', 'max'))}) "
            f"| {fmt(med(runs, 'sender_late_ms', 'p99'))} ms "
            f"| {fmt(med(runs, 'cpu', 'server_ms_per_callback'), 2)} ms "
            f"| {fmt(med(runs, 'cpu', 'server_pct'), 0)} "
            f"/ {fmt(med(runs, 'cpu', 'loadgen_pct'), 0)} "
            f"/ {fmt(med(runs, 'cpu', 'machine_pct'), 0)} % "
            f"| {full_gcs(runs)} "
            f"| {'yes' if passes(runs, rate) else 'no'} | {problems(runs) or '–'} |"
        )
    return "\n".join(lines)


def big_table(run: dict, rate: float) -> str:
    return "\n".join(
        [
            f"| {run['server']}, {run['dialogs']:,} dialogs connected "
            f"| connected | connect+subscribe | {run['posts']:,} callbacks at {fmt(rate, 0)}/s: "
            f"event p50 / p99 (max) | answer p50 / p99 | achieved/s | RSS per dialog "
            f"| server CPU per callback | full GCs (max ms) |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| WORKER_CONNECTIONS={run['worker_connections']} "
            f"| {run['connected']:,} | {run['connect_wall_s']:.2f} s "
            f"| {fmt(run['event_ms']['p50'])} / {fmt(run['event_ms']['p99'])} ms "
            f"({fmt(run['event_ms']['max'])}) "
            f"| {fmt(run['answer_ms']['p50'])} / {fmt(run['answer_ms']['p99'])} ms "
            f"| {fmt(run['achieved_rate'])} | {fmt(run['rss_per_dialog_kib'])} KiB "
            f"| {fmt((run.get('cpu') or {}).get('server_ms_per_callback'), 2)} ms "
            f"| {full_gcs([run])} |",
            "",
            f"problems: {problems([run]) or 'none'}",
        ]
    )
