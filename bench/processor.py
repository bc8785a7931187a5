"""Processor core vs polars on a generated trades CSV: throughput, peak memory, same figures.

    python -m bench.processor [--size-mb 100] [--seed 7] [--keep DIR]

Generates a seeded CSV (a few hundred symbols, millisecond ISO timestamps in one exchange
offset, per-symbol price decimals, integer sizes, a few bad rows), then runs
`handlers.core.marketdata.scan` (pyarrow) streaming the file in 1 MiB chunks (as the processor
streams from S3) and the same aggregation in polars, twice: with POLARS_MAX_THREADS=1 and with
its default threads. Each run is its own subprocess so that peak RSS is isolated. Every result
is compared with ours symbol by symbol; any difference fails the run. Targets (issue 13):
ours >= 1.0 x polars single-threaded and >= 0.6 x polars with default threads; ours peak RSS
<= 200 MB on a 1 GB file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024
# Timestamps our grammar accepts and polars parses the same way (see _polars).
TS_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
)
OFFSETS = ("Z", "+00:00", "-05:00", "+01:00", "+05:30", "+09:00")
BAD_ROWS = (
    # one of each kind both engines reject; never an extra field (polars would truncate it)
    "{ts},{sym},-{price},{size}",
    "{ts},{sym},{price},0",
    "{ts},{low},{price},{size}",
    "{naive},{sym},{price},{size}",
    "{ts},{sym},1e3,{size}",
    "{ts},{sym},{price}",
)


def generate(path: Path, size_mb: int, seed: int) -> dict[str, int]:
    """Write about `size_mb` MiB of trades; return the row counts written."""
    rnd = random.Random(seed)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    tickers: set[str] = set()
    while len(tickers) < 300:
        root = "".join(rnd.choices(letters, k=rnd.randint(1, 4)))
        tickers.add(root + rnd.choice(("", "", "", ".L", ".PA", "1")))
    symbols = sorted(tickers)
    decimals = {sym: rnd.choice((2, 2, 2, 4)) for sym in symbols}
    ticks = {sym: rnd.randint(100, 500_000) for sym in symbols}
    offset = rnd.choice(OFFSETS)
    local = datetime(2024, 3, 1, 9, 30)
    ms = 0
    target = size_mb * 1024 * 1024
    written = rows = bad = 0

    def price_text(sym: str) -> str:
        scale = 10 ** decimals[sym]
        return f"{ticks[sym] // scale}.{ticks[sym] % scale:0{decimals[sym]}d}"

    prices = {sym: price_text(sym) for sym in symbols}
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("timestamp,symbol,price,size\n")
        while written < target:
            batch = []
            second = -1
            head = ""
            picks = rnd.choices(symbols, k=10_000)
            steps = rnd.choices((0, 0, 1, 1, 2, 3), k=10_000)
            for sym, step in zip(picks, steps, strict=True):
                ms += step
                if ms // 1000 != second:
                    second = ms // 1000
                    head = (local + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S")
                if rnd.random() < 0.3:
                    ticks[sym] = max(1, ticks[sym] + rnd.randint(-5, 5))
                    prices[sym] = price_text(sym)
                size = rnd.choice((1, 10, 50, 100, 100, 100, 200, 500, 1000)) * rnd.randint(1, 9)
                ts = f"{head}.{ms % 1000:03d}{offset}"
                if rnd.random() < 0.0005:
                    line = rnd.choice(BAD_ROWS).format(
                        ts=ts, naive=ts[:23], sym=sym, low=sym.lower(), price=prices[sym], size=size
                    )
                    bad += 1
                else:
                    line = f"{ts},{sym},{prices[sym]},{size}"
                    rows += 1
                batch.append(line)
            text = "\n".join(batch) + "\n"
            out.write(text)
            written += len(text)
    return {"rows": rows, "bad_rows": bad}


# --- the two engines, each run in a child process --------------------------------------------


def _ours(path: Path) -> dict[str, Any]:
    from handlers.core.marketdata import scan

    def chunks() -> Any:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    result = scan(chunks(), max_bad_row_ratio=None)
    return {
        "rows": result.rows,
        "rejected": result.rejected_rows,
        "symbols": {sym: stats.as_json() for sym, stats in result.symbols.items()},
    }


def _polars(path: Path) -> dict[str, Any]:
    import polars as pl

    text = {name: pl.String for name in ("timestamp", "symbol", "price", "size")}
    frame = pl.scan_csv(path, schema=text, truncate_ragged_lines=True)
    parsed = frame.with_columns(
        ts=pl.col("timestamp").str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC", time_unit="ns", strict=False
        ),
        p=pl.col("price").cast(pl.Float64, strict=False),
        s=pl.col("size").cast(pl.Int64, strict=False),
    )
    valid = parsed.filter(
        pl.col("timestamp").str.contains(TS_PATTERN)
        & pl.col("ts").is_not_null()
        & pl.col("symbol").str.contains(r"^[A-Z][A-Z0-9.]{0,9}$")
        & pl.col("price").str.contains(r"^[0-9]{1,18}(\.[0-9]{1,18})?$")
        & (pl.col("p") > 0)
        & pl.col("size").str.contains(r"^[0-9]{1,18}$")
        & (pl.col("s") > 0)
    )
    by_time = ["ts", "p", "s"]
    stats = (
        valid.group_by("symbol")
        .agg(
            open=pl.col("p").sort_by(by_time).first(),
            high=pl.col("p").max(),
            low=pl.col("p").min(),
            close=pl.col("p").sort_by(by_time).last(),
            volume=pl.col("s").sum(),
            vwap=(pl.col("p") * pl.col("s")).sum() / pl.col("s").sum(),
            trades=pl.len(),
            first=pl.col("ts").min(),
            last=pl.col("ts").max(),
        )
        .collect()
    )
    total = frame.select(pl.len()).collect().item()
    symbols = {
        row["symbol"]: {
            "open": row["open"],
            "high": row["high"],
            "low": row["low"],
            "close": row["close"],
            "volume": row["volume"],
            "vwap": row["vwap"],
            "trades": row["trades"],
            "firstTs": row["first"].isoformat(),
            "lastTs": row["last"].isoformat(),
        }
        for row in stats.iter_rows(named=True)
    }
    rows = sum(item["trades"] for item in symbols.values())
    return {"rows": rows, "rejected": total - rows, "symbols": symbols}


def _child(engine: str, path: Path, out: Path) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    result = _ours(path) if engine == "ours" else _polars(path)
    result["seconds"] = time.perf_counter() - wall
    result["cpu_seconds"] = time.process_time() - cpu
    # ru_maxrss is KiB on Linux: this process only, so each engine is measured on its own
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result))


def _run(
    engine: str, path: Path, workdir: Path, polars_threads: str | None = None
) -> dict[str, Any]:
    out = workdir / f"{engine}.json"
    cmd = [sys.executable, "-m", "bench.processor", "--child", engine, str(path), str(out)]
    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
    if polars_threads is not None:
        env["POLARS_MAX_THREADS"] = polars_threads
    subprocess.run(cmd, check=True, env=env)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


# --- comparison and report -------------------------------------------------------------------


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Differences between the two results (empty when they agree)."""
    problems = []
    for key in ("rows", "rejected"):
        if ours[key] != theirs[key]:
            problems.append(f"{key}: ours {ours[key]} polars {theirs[key]}")
    if ours["symbols"].keys() != theirs["symbols"].keys():
        problems.append("different symbol sets")
        return problems
    for sym, mine in ours["symbols"].items():
        other = theirs["symbols"][sym]
        for key in ("volume", "trades"):
            if mine[key] != other[key]:
                problems.append(f"{sym}.{key}: {mine[key]} != {other[key]}")
        for key in ("open", "high", "low", "close", "vwap"):
            if abs(mine[key] - other[key]) > 1e-9 * abs(other[key]):
                problems.append(f"{sym}.{key}: {mine[key]} != {other[key]}")
        for key in ("firstTs", "lastTs"):
            if _instant(mine[key]) != _instant(other[key]):
                problems.append(f"{sym}.{key}: {mine[key]} != {other[key]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="write the CSV here instead of a temp dir")
    parser.add_argument(
        "--child", nargs=3, metavar=("ENGINE", "CSV", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        engine, csv_path, out = args.child
        _child(engine, Path(csv_path), Path(out))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-processor-") as tmp:
        workdir = Path(tmp)
        path = (args.keep or workdir) / f"trades-{args.size_mb}mb-seed{args.seed}.csv"
        if not path.exists():
            started = time.perf_counter()
            counts = generate(path, args.size_mb, args.seed)
            print(
                f"generated {path.name}: {path.stat().st_size / 1e6:.1f} MB, "
                f"{counts['rows']:,} good + {counts['bad_rows']:,} bad rows "
                f"in {time.perf_counter() - started:.1f} s"
            )
        size_mb = path.stat().st_size / 1e6
        ours = _run("ours", path, workdir)
        single = _run("polars", path, workdir, polars_threads="1")
        default = _run("polars", path, workdir)

    problems = [*compare(ours, single), *compare(ours, default)]
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, file {size_mb:.1f} MB")
    print(f"{'engine':<10} {'seconds':>8} {'cpu s':>8} {'MB/s':>8} {'peak RSS MB':>12}")
    for name, result in (("ours", ours), ("polars-1t", single), ("polars", default)):
        print(
            f"{name:<10} {result['seconds']:>8.2f} {result['cpu_seconds']:>8.2f} "
            f"{size_mb / result['seconds']:>8.1f} {result['peak_rss_mb']:>12.1f}"
        )
    print(
        f"throughput ours/polars-1t: {single['seconds'] / ours['seconds']:.2f} (target >= 1.0); "
        f"ours/polars: {default['seconds'] / ours['seconds']:.2f} (target >= 0.6)"
    )
    print(f"rows {ours['rows']:,}, rejected {ours['rejected']:,}, symbols {len(ours['symbols'])}")
    if problems:
        print(f"MISMATCH ({len(problems)}):", *problems[:20], sep="\n  ")
        return 1
    print("results agree: every symbol's figures match polars (both runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
