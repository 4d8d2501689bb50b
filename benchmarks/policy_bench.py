"""The group-policy endpoint (issue 21, "Measured"): what managed devices fetch, against a bare hello world.

    .venv/bin/python benchmarks/policy_bench.py                  # 3 rounds x 3 s, about 1 min
    .venv/bin/python benchmarks/policy_bench.py --seconds 5 --rounds 5

A fresh appliance with an org, a policy of a few rules and an org device token. Each round runs, with wrk at
32 connections: the bare hello world, then `/policy/ORG.json` with the device token (200, the signed document),
then the same with `If-None-Match` set to the document's ETag (304, how a device checks for a change), and the
macOS `.mobileconfig` rendering. A ratio is the median of the rounds' ratios to the same round's hello world.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import urllib.error
import urllib.request
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import run_load, start_appliance, start_bare_server  # noqa: E402
from benchmarks.report import format_table, machine_summary  # noqa: E402

POLICY = {"allow_only_listed": True, "allowed": {"acme/tools": ">=1.0.0", "acme/search": ">=2.1.0"},
          "blocked_publishers": ["mallory"], "minimum_versions": {"acme/tools": "1.4.2"},
          "auto_install": ["acme/tools"], "require_signature": True}


def call(url: str, token: str, method: str = "GET", body: dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[dict, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", **({"Content-Type": "application/json"} if data else {}),
        **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}"), dict(response.headers)


def prepare(appliance) -> tuple[str, str]:
    """An org `acme` with a policy and a device token; returns (device token, the policy document's ETag)."""
    owner = appliance.create_token("policyowner", scopes="read,account", admin=False)
    call(appliance.url("/api/orgs"), owner, "POST", {"slug": "acme", "name": "Acme"})
    call(appliance.url("/api/orgs/acme/policy"), owner, "PUT", {"policy": POLICY})
    device = call(appliance.url("/api/orgs/acme/device-tokens"), owner, "POST", {"name": "laptops"})[0]["token"]
    _, headers = call(appliance.url("/policy/acme.json"), device)
    try:  # a device holding the current document is told so without it
        call(appliance.url("/policy/acme.json"), device, headers={"If-None-Match": headers["ETag"]})
        raise RuntimeError("the policy endpoint did not answer 304 to its own ETag")
    except urllib.error.HTTPError as answer:
        assert answer.code == 304, answer
    return device, headers["ETag"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(machine_summary())
    with start_bare_server() as bare, start_appliance(extra_args=["--log-level", "WARNING"]) as appliance:
        device, etag = prepare(appliance)
        auth = {"Authorization": f"Bearer {device}"}
        rows = {"policy JSON (200, signed document)": (appliance.url("/policy/acme.json"), auth),
                "policy JSON revalidated (304, If-None-Match)": (appliance.url("/policy/acme.json"),
                                                                {**auth, "If-None-Match": etag}),
                "macOS .mobileconfig (200)": (appliance.url("/policy/acme.mobileconfig"), auth)}
        rates: dict[str, list[float]] = {"hello world": [], **{row: [] for row in rows}}
        ratios: dict[str, list[float]] = {row: [] for row in rows}
        for _ in range(args.rounds):
            hello = run_load(bare.url("/"), args.seconds)
            rates["hello world"].append(hello.rps)
            for row, (url, headers) in rows.items():
                result = run_load(url, args.seconds, headers=headers, server=appliance)
                assert result.errors == 0 and result.non_2xx == 0, (row, result)
                rates[row].append(result.rps)
                ratios[row].append(result.ratio_to(hello))
    table = [("hello world", f"{statistics.median(rates['hello world']):,.0f}", "1.00")]
    table += [(row, f"{statistics.median(rates[row]):,.0f}", f"{statistics.median(ratios[row]):.2f}") for row in rows]
    print(format_table(["target", "req/s (median)", "ratio to hello world (median)"], table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
