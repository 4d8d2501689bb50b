"""Smoke test of benchmarks/harness.py: real start/stop of the appliance and the bare server, the wrk
output parser on recorded output, and the Python fallback load generator; and the discovery benchmark end to
end on a small catalog. No timing asserts."""

from __future__ import annotations

import re
import urllib.request

import pytest

from benchmarks import discovery_bench
from benchmarks.harness import find_wrk, parse_wrk_output, run_load, start_appliance, start_bare_server
from benchmarks.report import format_table

# Recorded from `wrk -t2 -c32 -d2s --latency` against benchmarks/bare_server.py (Debian wrk 4.1.0).
WRK_OK = """\
Running 2s test @ http://127.0.0.1:18081/healthz
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.76ms  684.24us   7.33ms   81.21%
    Req/Sec     9.17k     1.76k   10.63k    80.00%
  Latency Distribution
     50%    1.59ms
     75%    1.91ms
     90%    2.58ms
     99%    4.35ms
  36569 requests in 2.01s, 6.10MB read
Requests/sec:  18216.56
Transfer/sec:      3.04MB
"""

# Same shape with 404s, socket errors and latencies in microseconds and seconds.
WRK_ERRORS = """\
Running 1s test @ http://127.0.0.1:18081/nope
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.62ms    2.14ms  20.16ms   95.00%
    Req/Sec     6.82k   653.39     7.92k    75.00%
  Latency Distribution
     50%  812.00us
     75%    2.29ms
     90%    3.53ms
     99%    1.20s
  13586 requests in 1.00s, 2.25MB read
  Socket errors: connect 0, read 3, write 0, timeout 4
  Non-2xx or 3xx responses: 13586
Requests/sec:  13529.81
Transfer/sec:      2.25MB
"""


def test_parse_wrk_output_reads_rate_and_percentiles():
    result = parse_wrk_output(WRK_OK)
    assert (result.rps, result.p50_ms, result.p99_ms, result.requests) == (18216.56, 1.59, 4.35, 36569)
    assert (result.errors, result.non_2xx) == (0, 0)


def test_parse_wrk_output_converts_units_and_counts_failures():
    result = parse_wrk_output(WRK_ERRORS)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(1200.0)
    assert (result.errors, result.non_2xx, result.requests) == (7, 13586, 13586)


def test_parse_wrk_output_accepts_padded_latency_lines():
    """wrk pads some percentile values with a trailing space ("1.08s ")."""
    padded = WRK_ERRORS.replace("     99%    1.20s\n", "     99%    1.20s \n")
    assert "1.20s \n" in padded and parse_wrk_output(padded).p99_ms == pytest.approx(1200.0)


def test_parse_wrk_output_rejects_output_without_latency_distribution():
    without_latency = "\n".join(line for line in WRK_OK.splitlines() if "%  " not in line)
    with pytest.raises(ValueError, match="--latency"):
        parse_wrk_output(without_latency)


def test_format_table_aligns_numbers_right():
    table = format_table(["name", "req/s"], [["a", 1234.5], ["bb", 7.0]])
    lines = table.splitlines()
    assert lines[0] == "| name | req/s |"
    assert lines[1] == "|------|------:|"
    assert lines[2] == "| a    | 1,234 |"  # f"{1234.5:,.0f}" rounds half to even
    assert lines[3] == "| bb   |  7.00 |"


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
        return response.status


def test_appliance_starts_serves_and_stops_on_sigterm():
    with start_appliance(warm=False) as app:  # no untimed warm-up start: nothing is timed here
        assert app.ready_seconds > 0
        assert "mcpstore listening on" in app.output()
        assert app.event_loop() == "uvloop"  # what `mcpstore serve` picks when uvloop is installed
        assert _status(app.url("/healthz")) == 200
        token = app.create_token(scopes="read")
        assert _status(app.url("/api/me"), {"Authorization": f"Bearer {token}"}) == 200
        memory = app.memory_mb()
        assert 0 < memory["rss"] <= memory["peak"]
        assert app.cpu_seconds() > 0
        exit_code, _ = app.stop()
        assert exit_code == 0
        assert app.data_dir.exists()  # kept until the with block ends, so a restart can reuse it
    assert not app.data_dir.exists()


def test_bare_server_runs_on_the_loop_asked_for():
    for choice, expected in (("auto", "uvloop"), ("asyncio", "asyncio")):
        with start_bare_server(event_loop=choice) as bare:
            assert bare.event_loop() == expected
            assert _status(bare.url("/")) == 200


def test_bare_server_under_python_fallback_load():
    with start_bare_server() as bare:
        result = run_load(bare.url("/healthz"), seconds=1, connections=4, server=bare, tool="python")
        assert result.tool == "python"
        assert result.requests > 0 and result.non_2xx == 0 and result.errors == 0
        assert result.p50_ms <= result.p99_ms
        assert result.cpu_us_per_request is not None
        exit_code, _ = bare.stop()
        assert exit_code == 0


def test_discovery_benchmark_runs_its_package_data_rounds_on_a_small_catalog(tmp_path, capsys):
    """The discovery benchmark end to end on 300 seeded packages, one round: the bare server's package-data
    shape answers every package URL, the appliance answers them too (no failed request: exit code 0), and the
    verdict line is printed. No figure is checked: this machine's speed is not the point here."""
    assert find_wrk() is not None, "the discovery benchmark needs wrk (.ci/run installs it; as root, find_wrk does)"
    code = discovery_bench.main(["--packages", "300", "--seconds", "1", "--rounds", "1", "--round-seconds", "1",
                                 "--only", "package data", "--data", str(tmp_path / "catalog")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "| bare aiohttp: package-data shape, no work (same " in printed
    assert re.search(r"\| package data \([\d,]+ packages\) +\| +[\d,]+ \| +\d+%\* ", printed), printed
    assert re.search(r"package data >= 60% of bare req/s \| \d+% \(median of 1 rounds", printed), printed


def test_instruction_benchmark_drives_exact_counts_and_stops_on_a_wrong_answer(tmp_path):
    """benchmarks/instructions.py divides callgrind's totals by the requests it sent: every request must be
    answered (200) and counted once. Its client against the real bare server, and its reader of callgrind's
    dump format (the `events:`/`totals:` lines of callgrind 3.19), without valgrind itself."""
    from benchmarks import instructions

    with start_bare_server() as bare:
        # 37 over 8 connections: the last batch is partial; pipelined leftovers would break the next read
        assert instructions.drive(bare.port, ["/", "/healthz"], requests=37, connections=8) == 37
        with pytest.raises(RuntimeError, match="/missing answered 404"):
            instructions.drive(bare.port, ["/", "/missing"], requests=4, connections=2)
    dump = tmp_path / "callgrind.out"
    dump.write_text("# callgrind format\nversion: 1\ncmd: python x\npart: 2\n\nevents: Ir Dr I1mr\nsummary: 0\n\n"
                    "fl=(1) x.c\nfn=(1) f\n1 10 2 1\n\ntotals: 4000 1200 300\n")
    counted = instructions.Counted("x", 2000, instructions.read_totals(dump))
    assert (counted.per_request("Ir"), counted.per_request("I1mr"), counted.per_request("DLmr")) == (2.0, 0.15, 0)


def test_workers_benchmark_runs_one_and_two_workers_and_checks_the_ledger(tmp_path, capsys):
    """benchmarks/workers_bench.py end to end, briefly: `--workers 1` and `--workers 2` each answer the read
    rounds and take concurrent publishes, and the ledger check finds one leaf per 201 (exit code 0). No figure
    is checked."""
    from benchmarks import workers_bench

    assert find_wrk() is not None, "the workers benchmark needs wrk (.ci/run installs it; as root, find_wrk does)"
    code = workers_bench.main(["--packages", "300", "--data", str(tmp_path / "catalog"), "--seconds", "1",
                               "--rounds", "1", "--publishes", "4", "--publishers", "4", "--sizes", "",
                               "--intervals", ""])
    printed = capsys.readouterr().out
    assert code == 0, printed
    for workers in (1, 2):
        assert re.search(rf"\| search \(no-cache\) +\| +{workers} \| +[\d,]+ \|", printed), printed
        assert re.search(rf"\| default \(0\.1 s\) +\| +{workers} \| +\d+ \| +4 \| +0 \| .* \| ok +\|", printed), printed


def test_workers_benchmark_ledger_check_names_gaps_and_unmatched_publishes(tmp_path):
    """The check reads real SQLite: a missing index, a 201 without its leaf, and a bundle with two leaves."""
    import json
    import sqlite3

    from benchmarks.workers_publish import ledger_check

    db = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE ledger_leaves (idx INTEGER PRIMARY KEY, data TEXT)")
        conn.execute("CREATE TABLE ledger_checkpoints (size INTEGER PRIMARY KEY)")
        leaves = {0: "a", 1: "b", 2: "b", 4: "c"}  # 3 is missing; "b" has two leaves
        conn.executemany("INSERT INTO ledger_leaves VALUES (?, ?)",
                         [(i, json.dumps({"kind": "publish", "sha256": sha})) for i, sha in leaves.items()])
        conn.execute("INSERT INTO ledger_checkpoints VALUES (5)")
    problems, checkpoints = ledger_check(db, 0, ["a", "b", "c", "d"])
    assert checkpoints == 1
    assert problems == ["1 leaves missing below 5",
                        "1 publishes without a leaf, 1 leaves without a publish, 1 bundles with two leaves or more"]
    assert ledger_check(db, 0, ["a", "b", "b", "c"]) == (["1 leaves missing below 5"], 1)
