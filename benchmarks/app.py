"""Benchmark: what a person waits for, from photo chosen to results in the browser (issue #12).

    python -m benchmarks.app [--rounds 8] [--clients 30] [--searches 3] [--port 7898]

Makes 12-megapixel phone-like photos of three room scenes (``benchmarks/scenes``), a different one for every
request (each with a small mark of its own: the app keeps the detections of the photos it saw last), starts
``app.py`` on 127.0.0.1 with the bundled catalogue, and measures, in one run:

* **browser**: headless Chromium at 1280 px chooses a photo in the page's file input (which starts the
  search, as on the page) and waits until the results are visible (every result image loaded), then until
  the region boxes are (the marked photo loaded), for ``--rounds`` photos; where that time goes, from the
  page's requests (``benchmarks.browser``): the upload, the search asked for, the answer in, the drawing;
* **page API, sequential**: ``/search_photo`` (results and the pieces' boxes) with the Gradio client, one at a time,
  upload included (the browser uploads once per photo; the client once per call), result images not
  downloaded (the answer holds their URLs); and, photos alternately, asked as the page's browser asks (the upload,
  the queue's join, the answer's stream), without the Gradio client's own work;
* **page API under load**: ``--clients`` clients x ``--searches`` searches at once (results, then
  regions), as ``benchmarks.load`` runs them without its 118 MP photo: searches per second, p50 / p95,
  requests rejected as busy;
* **HTTP API** (``POST /api/search``, ``http_api``): sequential, without and with regions, and the same
  burst of clients (whole-photo searches): answered, told "busy" (503), errors;
* the same load and burst on the app restarted with ``FURNITURE_SEARCH_LANES=1`` (one search at a time on
  every core, as before searches could run two at once when others wait), twice, then on
  the app as it runs again: the baseline, same run, A B B A;
* the app's resident memory after the sequential searches and at its peak under load;
* **the engine alone** on the same photos in this process before the app starts, so that the page's
  overhead is a number.

Loopback only and bounded (at most 64 clients, every request times out). Results go to
``benchmarks/results/app.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from benchmarks.browser import photo_rounds
from benchmarks.common import DEFAULT_CATALOGUE, RESULTS, ROOT, machine_info, machine_line, percentile
from benchmarks.load import (
    DEFAULT_STORE,
    PHONE_SIZE,
    connect,
    cpu_seconds,
    engine_times,
    free_port,
    is_rejection,
    photo_series,
    resident_mb,
    run_client,
    sample_memory,
    start_app,
    wait_until_ready,
)
from engine.networks import CORES

SCENES = ("scene_000.jpg", "scene_001.jpg", "scene_002.jpg")
# Photos the engine alone is timed on (the first a warm-up).
ENGINE_PHOTOS = 5


def search_photo_index(url: str) -> int:
    """The number Gradio's queue knows the page's ``search_photo`` event by (from the page's configuration)."""
    config = httpx.get(f"{url}/config", timeout=30).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == "search_photo")


def protocol_search(http: httpx.Client, url: str, event: int, photo: Path) -> None:
    """One ``search_photo`` asked for as the page's browser asks: the upload, the queue's join, the answer's stream
    read until the search's result (its inputs: the photo, 8 results, "auto", no filter)."""
    uploaded = http.post(f"{url}/gradio_api/upload", files={"files": (photo.name, photo.read_bytes(), "image/jpeg")})
    session = uuid.uuid4().hex
    data = [{"path": uploaded.json()[0], "orig_name": photo.name, "meta": {"_type": "gradio.FileData"}}, 8, "auto", ""]
    http.post(f"{url}/gradio_api/queue/join", json={"data": data, "fn_index": event, "session_hash": session}
              ).raise_for_status()
    with http.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as answer:
        for line in answer.iter_lines():
            if '"process_completed"' in line:
                if not json.loads(line[len("data:"):]).get("success"):
                    raise RuntimeError(f"search_photo failed: {line}")
                return
    raise RuntimeError("the answer's stream ended before the search's result")


def api_sequential(url: str, photos: list[Path], timeout_s: float) -> dict[str, list[float]]:
    """Seconds per ``/search_photo`` call (the page's one call per photo: results and boxes), one at a time, upload
    included, result images not downloaded; photos alternately with the Gradio client, as an API caller uses it,
    and as the page's browser asks (``protocol_search``), which leaves out the client's own work."""
    from gradio_client import Client, handle_file

    # The answer as an API caller gets it: the results with their image URLs (fetching the images is the
    # caller's choice; the browser figures include it).
    client = Client(url, verbose=False, download_files=False)
    event = search_photo_index(url)
    times: dict[str, list[float]] = {"/search_photo": [], "protocol": []}
    with httpx.Client(timeout=timeout_s) as http:
        for number, photo in enumerate(photos):
            started = time.perf_counter()
            if number % 2:
                protocol_search(http, url, event, photo)
            else:
                client.submit(handle_file(str(photo)), 8, "auto", api_name="/search_photo").result(timeout=timeout_s)
            times["protocol" if number % 2 else "/search_photo"].append(time.perf_counter() - started)
    return times


def http_post(url: str, photo: Path, fields: dict[str, str], timeout_s: float) -> tuple[int, dict]:
    """``POST /api/search`` with ``photo`` as a multipart upload; the status and the JSON answer."""
    with photo.open("rb") as handle:
        answer = httpx.post(f"{url}/api/search", files={"image": (photo.name, handle, "image/jpeg")}, data=fields,
                            timeout=timeout_s)
    return answer.status_code, answer.json()


def http_sequential(url: str, photos: list[Path], timeout_s: float) -> dict[str, list[float]]:
    """Seconds per ``POST /api/search``, one at a time, alternately without and with regions, each photo new."""
    times: dict[str, list[float]] = {"search": [], "regions": []}
    for number, photo in enumerate(photos):
        for name, fields in [(("search", {"k": "8", "regions": "false"}), ("regions", {"k": "8", "regions": "true"}))[number % 2]]:
            started = time.perf_counter()
            status, answer = http_post(url, photo, fields, timeout_s)
            if status != 200:
                raise SystemExit(f"POST /api/search answered {status}: {answer}")
            times[name].append(time.perf_counter() - started)
    return times


def http_burst(url: str, photos: list[Path], clients: int, searches: int, timeout_s: float) -> dict:
    """``clients`` HTTP clients x ``searches`` whole-photo searches at once (a photo each): throughput, latency,
    busy answers."""

    def client(number: int) -> list[tuple[int, float]]:
        done = []
        for photo in photos[number * searches : (number + 1) * searches]:
            started = time.perf_counter()
            try:
                status, _answer = http_post(url, photo, {"k": "8", "regions": "false"}, timeout_s)
            except Exception:  # a timeout or a dropped connection: counted as an error
                status = -1
            done.append((status, time.perf_counter() - started))
        return done

    begun = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        done = [answer for answers in pool.map(client, range(clients)) for answer in answers]
    seconds = time.perf_counter() - begun
    ok = [took for status, took in done if status == 200]
    return {"clients": clients, "searches_per_client": searches, "seconds": seconds, "ok": len(ok),
            "busy": sum(status == 503 for status, _ in done),
            "errors": sum(status not in (200, 503) for status, _ in done),
            "searches_per_s": len(ok) / seconds, "latency_s": quantiles(ok)}


def under_load(url: str, photos: list[Path], clients: int, searches: int, timeout_s: float, pid: int) -> dict:
    """``clients`` page clients x ``searches`` searches at once; throughput, latency, rejections, peak memory."""
    stop = threading.Event()
    samples: list[float] = []
    sampler = threading.Thread(target=sample_memory, args=(pid, stop, samples), daemon=True)
    sampler.start()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        connected = list(pool.map(connect, [url] * clients))
        begun = time.perf_counter()
        cpu_before = cpu_seconds(pid), cpu_seconds(os.getpid())
        runs = [pool.submit(run_client, connected[n], n, photos[n * searches : (n + 1) * searches], timeout_s, begun)
                for n in range(clients)]
        done = [search for run in runs for search in run.result()]
    seconds = time.perf_counter() - begun
    # Where the cores went: the clients run in this process, on the same cores as the app.
    cpu = {"app": cpu_seconds(pid) - cpu_before[0], "clients": cpu_seconds(os.getpid()) - cpu_before[1],
           "available": CORES * seconds}
    stop.set()
    sampler.join()
    ok = [s for s in done if not s.error]
    rejected = [s for s in done if s.error and is_rejection(s.error)]
    return {
        "clients": clients, "searches_per_client": searches, "seconds": seconds,
        "ok": len(ok), "rejected": len(rejected), "errors": len(done) - len(ok) - len(rejected),
        "error_messages": sorted({s.error[:200] for s in done if s.error}),
        "searches_per_s": len(ok) / seconds,
        "results_s": {f"p{q}": percentile([s.results_s for s in ok], q) for q in (50, 95)} if ok else {},
        "total_s": {f"p{q}": percentile([s.total_s for s in ok], q) for q in (50, 95)} if ok else {},
        "peak_mb": max(samples, default=float("nan")), "cpu_s": cpu,
    }


def loaded(url: str, process, args: argparse.Namespace, photos: list[Path]) -> dict:
    """The page under ``args.clients`` x ``args.searches`` searches at once, then the HTTP API's burst (``photos``:
    one for each of those searches; the app keeps the detections of the last few only)."""
    page = args.clients * args.searches
    load = (under_load(url, photos[:page], args.clients, args.searches, args.timeout, process.pid) if args.clients
            else {"clients": 0, "searches_per_client": 0, "ok": 0, "rejected": 0, "errors": 0, "error_messages": [],
                  "searches_per_s": float("nan"), "results_s": {}, "total_s": {}, "peak_mb": float("nan")})
    return {"load": load, "http_burst": http_burst(url, photos[page:], max(args.clients, 1), args.searches, args.timeout)}


def lanes_rounds(url: str, port: int, args: argparse.Namespace, photos: list[Path], ready_photo: Path, work: Path,
                 first: dict) -> list[tuple[str, dict]]:
    """The load on the app as it runs (``first``, measured already), then twice with one lane, then again as it
    runs (A B B A: a drift over the run counts alike for both)."""
    rounds = [("two lanes (default)", first)]
    for lanes, repeats in (("1", 2), ("2", 1)):
        process = start_app(port, DEFAULT_CATALOGUE, DEFAULT_STORE, work / f"app-lanes-{lanes}.log",
                            FURNITURE_SEARCH_LANES=lanes)
        try:
            wait_until_ready(url, ready_photo, process)
            name = "two lanes (default)" if lanes == "2" else "one lane (`FURNITURE_SEARCH_LANES=1`)"
            rounds += [(name, loaded(url, process, args, photos)) for _ in range(repeats)]
        finally:
            process.terminate()
            process.wait(timeout=30)
    return rounds


def seed_design_ms(photos: list[Path]) -> float:
    """Median ms of the seed's design on ``photos`` (the first a warm-up), in this process: #28 sets the page API's
    bar at 1.5x it, measured in the same run."""
    from benchmarks.speed import original
    from engine.catalogue import scan_catalogue

    pipeline = original(len(scan_catalogue(DEFAULT_CATALOGUE).images))
    pipeline.run(photos[0].read_bytes())
    return percentile([pipeline.run(photo.read_bytes())["total"] for photo in photos[1:]], 50)


def quantiles(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95)} if values else {}


def lanes_table(s: dict) -> list[str]:
    """Under load: the app as it runs (``FURNITURE_SEARCH_LANES=2``: the page's and the API's searches two at once
    when others wait, the newcomer on one core) against every search one at a time on every core
    (``FURNITURE_SEARCH_LANES=1``), same run, in the order measured."""
    rows, means = [], {}
    for name, measured in s["lanes_rounds"]:
        load, burst = measured["load"], measured["http_burst"]
        rows.append(f"| {name} | {load['searches_per_s']:.2f} searches/s | "
                    f"{load['results_s'].get('p50', float('nan')):.2f} / {load['results_s'].get('p95', float('nan')):.2f} s | "
                    f"{load['ok']} / {load['rejected']} / {load['errors']} | {burst['searches_per_s']:.2f} searches/s | "
                    f"{burst['ok']} / {burst['busy']} / {burst['errors']} |")
        means.setdefault(name, []).append((load["searches_per_s"], burst["searches_per_s"]))
    (two, one) = [np.mean(values, axis=0) for values in means.values()]
    cpu = s["lanes_rounds"][0][1]["load"].get("cpu_s")
    cores = (f" During the first page burst the app used {cpu['app']:.1f} core-seconds and the clients (in the "
             f"benchmark's process, on the same cores) {cpu['clients']:.1f}, of {cpu['available']:.1f}." if cpu else "")
    return ["| under load, same run, in this order | page: throughput | page: one search p50 / p95 | "
            "page: answered / busy / errors | HTTP API: throughput | HTTP API: answered / busy / errors |",
            "|---|---|---|---|---|---|", *rows, "",
            f"Mean throughput, two lanes ÷ one lane: page {two[0] / one[0]:.2f}×, HTTP API {two[1] / one[1]:.2f}×."
            + cores]


def browser_steps(rounds: list[dict[str, float]]) -> str:
    """The browser's steps as the report says them: when each ended, p50 over the photos, the server's share and
    the browser's own CPU."""
    ms = {step: percentile([r[step] for r in rounds if step in r], 50) * 1000
          for step in ("uploaded", "asked", "answered", "results", "boxes") if any(step in r for r in rounds)}
    said = {"uploaded": "uploaded", "asked": "search asked for", "answered": "answer in", "results": "results shown",
            "boxes": "boxes shown"}
    text = ", ".join(f"{said[step]} {value:.0f} ms" for step, value in ms.items())
    server = [r["answered"] - r["asked"] for r in rounds if "answered" in r]
    text += f" (asked → answered: {percentile(server, 50) * 1000:.0f} ms)" if server else ""
    cpu = [r["browser_cpu"] for r in rounds if "browser_cpu" in r]
    return text + (f"; Chromium's CPU a photo, on the same cores: {percentile(cpu, 50) * 1000:.0f} ms" if cpu else "")


def render_markdown(s: dict, info: dict, load_before: str, command: str) -> str:
    ms = lambda seconds: f"{seconds * 1000:.0f} ms"  # noqa: E731
    engine, load, http, burst = s["engine_ms"], s["load"], s["http_s"], s["http_burst"]
    browser_results = [r["results"] for r in s["browser_s"]]
    browser_regions = [r["boxes"] for r in s["browser_s"]]
    api = s["api_s"]
    # A scene's page search is the engine's region search (its whole-photo search only when asked).
    overhead = percentile(api["/search_photo"], 50) * 1000 / engine["search_regions"]
    seed = s["seed_design_ms"]
    lines = [
        "# The app as a person uses it: photo chosen → results in the browser",
        "",
        machine_line(info),
        f"Load average before the run: {load_before}. Command: `{command}`.",
        "",
        "12 MP phone-like photos of three room scenes (JPEG, ~"
        f"{s['photo_mb']:.1f} MB), a new one for every request; the app on 127.0.0.1 (a search alone on every core; when others "
        "wait, page and API searches two at once, the newcomer on one core).",
        "",
        "| what a person waits for | p50 | p95 | goal (#28) |",
        "|---|---|---|---|",
        f"| browser (headless Chromium, 1280 px): photo chosen → results visible ({len(browser_results)} photos) | "
        f"{ms(percentile(browser_results, 50))} | {ms(percentile(browser_results, 95))} | p50 ≤ 250 ms |",
        f"| browser: photo chosen → region boxes visible | {ms(percentile(browser_regions, 50))} | "
        f"{ms(percentile(browser_regions, 95))} | p50 ≤ 350 ms |",
        f"| page API `/search_photo`, one client, sequential (upload included, images not fetched) | {ms(percentile(api['/search_photo'], 50))} | "
        f"{ms(percentile(api['/search_photo'], 95))} | ≤ 1.5× the seed's design: {ms(1.5 * seed / 1000)} |",
        f"| the same asked as the page's browser asks (upload, the queue's join, the answer's stream; no Gradio client) | "
        f"{ms(percentile(api['protocol'], 50))} | {ms(percentile(api['protocol'], 95))} | |",
        f"| {load['clients']} clients × {load['searches_per_client']} searches at once (results, then regions): "
        f"one search, results | {load['results_s'].get('p50', float('nan')):.2f} s | "
        f"{load['results_s'].get('p95', float('nan')):.2f} s | p95 ≤ 6 s |",
        f"| the same: throughput, answered / rejected as busy / errors | {load['searches_per_s']:.2f} searches/s | "
        f"{load['ok']} / {load['rejected']} / {load['errors']} | ≥ 5 searches/s, none refused |",
        f"| HTTP API `POST /api/search`, sequential (upload included) | {ms(percentile(http['search'], 50))} | "
        f"{ms(percentile(http['search'], 95))} | |",
        f"| HTTP API with `regions=true`, sequential | {ms(percentile(http['regions'], 50))} | "
        f"{ms(percentile(http['regions'], 95))} | |",
        f"| HTTP API, {burst['clients']} clients × {burst['searches_per_client']} searches at once: one search | "
        f"{burst['latency_s'].get('p50', float('nan')):.2f} s | {burst['latency_s'].get('p95', float('nan')):.2f} s | |",
        f"| the same: throughput, answered / busy (503) / errors | {burst['searches_per_s']:.2f} searches/s | "
        f"{burst['ok']} / {burst['busy']} / {burst['errors']} | ≥ 12 searches/s |",
        "",
        f"Where the browser's time goes (p50 from the photo chosen, from the page's requests): "
        f"{browser_steps(s['browser_s'])}.",
        "",
        *lanes_table(s),
        "",
        "| the engine alone, photos like these, this process (median) | |",
        "|---|---|",
        f"| `SearchEngine.search` | {engine['search']:.0f} ms |",
        f"| `SearchEngine.search_regions` (the page's search of a scene) | {engine['search_regions']:.0f} ms |",
        f"| the seed's design (full decode, ResNet-50 at 224 px in torch, exact search): #28's bar | {seed:.0f} ms |",
        f"| `SearchEngine.explain_match` (a result's \"why this match\" heat maps) | {engine['explain_match']:.0f} ms |",
        f"| page API `/search_photo` (results and boxes) p50 ÷ engine region search | {overhead:.2f}× |",
        f"| HTTP API `POST /api/search` p50 ÷ engine search | {percentile(http['search'], 50) * 1000 / engine['search']:.2f}× |",
        "",
        f"App resident memory: {s['memory_mb']['after_sequential']:.0f} MB after the sequential searches, "
        f"{load['peak_mb']:.0f} MB at the peak under load (goals ≤ 800 MB / ≤ 1 GB).",
        "",
    ]
    if load["error_messages"]:
        lines += ["Errors and rejections under load:", "", *[f"- {m}" for m in load["error_messages"]], ""]
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None) -> tuple[argparse.Namespace, str]:
    """The benchmark's arguments, bounded, and the command line that gives them (for the report)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="photos chosen in the browser and API calls (at most 50)")
    parser.add_argument("--clients", type=int, default=30, help="concurrent page clients (at most 64; 0: skip)")
    parser.add_argument("--searches", type=int, default=3, help="searches per client (at most 10)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a request counts as failed")
    parser.add_argument("--port", type=int, default=0, help="port for the app (default: a free one)")
    parser.add_argument("--output", type=Path, default=RESULTS / "app.md")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 50 or not 0 <= args.clients <= 64 or not 1 <= args.searches <= 10:
        parser.error("--rounds 1-50, --clients 0-64, --searches 1-10 (this benchmark stays bounded)")
    return args, "python -m benchmarks.app" + "".join(
        f" --{name} {getattr(args, name)}" for name in ("rounds", "clients", "searches")
        if getattr(args, name) != parser.get_default(name))


def main(argv: list[str] | None = None) -> None:
    args, command = parse_arguments(argv)
    info = machine_info()
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    work = Path(tempfile.mkdtemp(prefix="furniture-app-bench-"))
    # A photo of its own for every request (the app keeps the detections of the last few photos it saw, and
    # people send different photos), made from three room scenes.
    # The load and the burst run four times on the same photos (lanes_rounds).
    loads = args.clients * args.searches + max(args.clients, 1) * args.searches
    count = 1 + 2 * ENGINE_PHOTOS + (args.rounds + 1) + 2 * args.rounds + 2 * args.rounds + loads
    series = [photo_series(ROOT / "benchmarks" / "scenes" / name, PHONE_SIZE, work, -(-count // len(SCENES)))
              for name in SCENES]
    supply = iter([photo for photos in zip(*series) for photo in photos])
    take = lambda number: [next(supply) for _ in range(number)]  # noqa: E731
    ready_photo = take(1)[0]
    load_photos = take(loads)
    engine = engine_times(DEFAULT_STORE, DEFAULT_CATALOGUE, take(ENGINE_PHOTOS))
    seed = seed_design_ms(take(ENGINE_PHOTOS))
    print(f"engine alone: {engine}; the seed's design {seed:.0f} ms", flush=True)

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_app(port, DEFAULT_CATALOGUE, DEFAULT_STORE, work / "app.log")
    try:
        wait_until_ready(url, ready_photo, process)
        browser = photo_rounds(url, take(args.rounds + 1), args.timeout)
        print(f"browser: {browser}", flush=True)
        api = api_sequential(url, take(2 * args.rounds), args.timeout)
        print(f"api: {api}", flush=True)
        http = http_sequential(url, take(2 * args.rounds), args.timeout)
        print(f"http: {http}", flush=True)
        memory = {"after_sequential": resident_mb(process.pid)}
        first = loaded(url, process, args, load_photos)
    finally:
        process.terminate()
        process.wait(timeout=30)
    rounds = lanes_rounds(url, port, args, load_photos, ready_photo, work, first)
    load, burst = first["load"], first["http_burst"]

    summary = {"engine_ms": engine, "seed_design_ms": seed, "browser_s": browser, "api_s": api, "http_s": http, "http_burst": burst,
               "memory_mb": memory, "load": load, "lanes_rounds": rounds,
               "photo_mb": ready_photo.stat().st_size / 1e6}
    markdown = render_markdown(summary, info, load_before, command)
    print(markdown)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown, encoding="utf-8")
    args.output.with_suffix(".json").write_text(
        json.dumps({"machine": info, "load_before": load_before, "command": command, **summary,
                    "summary": {**{f"browser_{step}": quantiles([r[step] for r in browser if step in r])
                                   for step in ("uploaded", "asked", "answered", "results", "boxes")},
                                **{name: quantiles(values) for name, values in api.items()},
                                **{f"http_{name}": quantiles(values) for name, values in http.items()}}}, indent=1),
        encoding="utf-8")


if __name__ == "__main__":
    main()
