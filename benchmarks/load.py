"""Benchmark: the app under load, as its users reach it (issue #11).

    python -m benchmarks.load [--clients 30] [--searches 3] [--no-big-photo] [--port 7899]

Starts ``app.py`` on 127.0.0.1 (the bundled catalogue and its store), then, all at once:

* ``--clients`` page API clients, each running ``--searches`` searches one after the other the way the
  page does (one ``/search_photo``: results and boxes), each with a 12-megapixel phone-sized photo of its own;
* one client sending a 118-megapixel photo (unless ``--no-big-photo``);
* a probe fetching the page (``GET /``) every 0.2 s: does the page still answer?
* a sampler reading the app's resident memory every 0.2 s.

Everything talks to 127.0.0.1 only and is bounded: at most ``--clients`` + 1 clients, every request times
out after ``--timeout`` seconds. It reports search latency (p50/p95), searches per second, errors and
rejected requests, the page's answer times, and the app's memory before, at its peak and after, next to the
engine's own time for the same photo measured in this process before the app starts. Results go to
``benchmarks/results/load.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from benchmarks.common import DEFAULT_CATALOGUE, DEFAULT_QUERIES, RESULTS, ROOT, machine_info, machine_line, percentile

DEFAULT_STORE = ROOT / "index_store" / "default"
PHONE_SIZE = (4032, 3024)  # 12 MP
BIG_SIZE = (12544, 9408)  # 118 MP, the photo that froze the page for 40 s (issue #11)
# Seconds after the burst before memory is read "after": longer than the app's idle time before it trims.
IDLE_WAIT_S = 3.0
# Photos the engine alone is timed on.
ENGINE_PHOTOS = 6


@dataclass
class Search:
    """One search as a page client made it."""

    client: int
    started: float  # seconds since the burst began
    results_s: float  # until the results came back
    total_s: float  # until the regions came back too
    error: str = ""


def phone_photo(source: Path, size: tuple[int, int], path: Path, quality: int = 85) -> Path:
    """A photo of ``size`` pixels made from a held-out render, with the fine texture a camera adds (JPEG of
    a realistic size, not a flat image that compresses to nothing)."""
    image = Image.open(source).convert("RGB").resize(size, Image.BILINEAR)
    noise = Image.effect_noise(size, 24).convert("RGB").filter(ImageFilter.GaussianBlur(0.6))
    Image.blend(image, noise, 0.08).save(path, quality=quality)
    return path


def photo_series(source: Path, size: tuple[int, int], folder: Path, count: int) -> list[Path]:
    """``count`` distinct phone-like photos made from ``source``: each carries a small mark of its own, so that no
    search reuses the detections the app kept from another (people send different photos)."""
    base = phone_photo(source, size, folder / f"base-{source.stem}.jpg")
    photo = Image.open(base).convert("RGB")
    rng = random.Random(source.stem)
    paths = []
    for number in range(count):
        marked = photo.copy()
        x, y = rng.randrange(size[0] - size[0] // 20), rng.randrange(size[1] - size[1] // 20)
        colour = tuple(rng.randrange(256) for _ in range(3))
        ImageDraw.Draw(marked).rectangle((x, y, x + size[0] // 20, y + size[1] // 20), fill=colour)
        paths.append(folder / f"{source.stem}-{number:03d}.jpg")
        marked.save(paths[-1], quality=85)
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resident_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory (or ``VmHWM``, its peak) in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_app(port: int, catalogue: Path, store: Path, log: Path, **settings: str) -> subprocess.Popen:
    """``app.py`` on 127.0.0.1:``port``; ``settings`` are more of its environment variables."""
    env = dict(os.environ, FURNITURE_CATALOGUE=str(catalogue), FURNITURE_STORE=str(store),
               GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False",
               **settings)
    return subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def wait_until_ready(url: str, photo: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until the app answers a search (it loads or builds the index in the background first)."""
    from gradio_client import Client, handle_file

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit("the app exited while starting; see its log")
        try:
            Client(url, verbose=False, download_files=False).predict(handle_file(str(photo)), 4, "auto", api_name="/search_photo")
            return
        except Exception:  # not listening yet, or "Not ready yet"
            time.sleep(1)
    raise SystemExit(f"the app did not answer a search within {timeout:.0f} s")


def page_search(client, photo: Path, timeout: float) -> tuple[float, float]:
    """What the page does for one photo: one search, whose answer holds the results and the pieces' boxes; seconds
    until the results came back and until the boxes did (the same answer)."""
    from gradio_client import handle_file

    started = time.perf_counter()
    client.submit(handle_file(str(photo)), 8, "auto", api_name="/search_photo").result(timeout=timeout)
    answered = time.perf_counter() - started
    return answered, answered


def connect(url: str):
    """A page API client (it fetches the app's config and API description, as a page load does), or the error."""
    from gradio_client import Client

    try:
        return Client(url, verbose=False, download_files=False)
    except Exception as error:
        return error


def run_client(client, number: int, photos: list[Path], timeout: float, begun: float) -> list[Search]:
    """One page client searching ``photos`` one after the other."""
    if isinstance(client, Exception):
        return [Search(number, 0.0, 0.0, 0.0, f"connect: {client}")]
    done = []
    for photo in photos:
        started = time.perf_counter() - begun
        try:
            results, total = page_search(client, photo, timeout)
            done.append(Search(number, started, results, total))
        except Exception as error:
            done.append(Search(number, started, 0.0, 0.0, str(error) or type(error).__name__))
    return done


def probe_page(url: str, seconds: float, output: Path) -> subprocess.Popen:
    """Fetch the page (``GET /``) every 0.2 s for ``seconds`` in a separate process (so that this process's own
    clients cannot delay it), writing one line per request: its wall-clock time, answer time (inf on failure)."""
    script = f"""
import time, urllib.request
url, end, out = {url!r}, time.time() + {seconds!r}, open({str(output)!r}, "w")
while time.time() < end:
    started = time.perf_counter()
    try:
        urllib.request.urlopen(url, timeout=10).read()
        took = time.perf_counter() - started
    except OSError:
        took = float("inf")
    out.write(f"{{time.time() - took:.3f}} {{took:.4f}}\\n"); out.flush()
    time.sleep(0.2)
"""
    return subprocess.Popen([sys.executable, "-c", script])


def read_probe(output: Path) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in line.split()) for line in output.read_text().splitlines() if line.strip()]


def sample_memory(pid: int, stop: threading.Event, samples: list[float]) -> None:
    while not stop.is_set():
        samples.append(resident_mb(pid))
        stop.wait(0.2)


def engine_times(store: Path, catalogue: Path, photos: list[Path]) -> dict[str, float]:
    """The engine alone, in this process: median ms of a search of each photo, of its region search (the page's
    search of a scene) and of explaining a match with it; each with its own detector pass, as a new photo has."""
    from engine.indexing import open_current
    from engine.search import SearchEngine

    # Built, synced or repaired first where needed, as the app does when it starts (a fresh checkout has none).
    engine = SearchEngine.from_store(open_current(catalogue, store), catalogue)
    engine.search(photos[0])
    steps = {"search": engine.search, "search_regions": engine.search_regions,
             "explain_match": lambda photo: engine.explain_match(photo, 0)}  # "why this match" for a result
    times: dict[str, list[float]] = {name: [] for name in steps}
    for photo in photos[1:]:
        for name, step in steps.items():
            if engine.detector is not None:
                engine.detector.forget()
            started = time.perf_counter()
            step(photo)
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: percentile(values, 50) for name, values in times.items()}


def is_rejection(error: str) -> bool:
    return "queue is full" in error.lower() or "busy" in error.lower()


def summarise(searches: list[Search], big: list[Search], answers: list[float], memory: dict, seconds: float,
              engine: dict, args: argparse.Namespace) -> dict:
    ok = [s for s in searches if not s.error]
    rejected = [s for s in searches if s.error and is_rejection(s.error)]
    errors = [s for s in searches if s.error and not is_rejection(s.error)]
    finite = [a for a in answers if a != float("inf")]
    return {
        "clients": args.clients,
        "searches_per_client": args.searches,
        "big_photo": not args.no_big_photo,
        "searches": len(searches),
        "ok": len(ok),
        "errors": len(errors),
        "rejected": len(rejected),
        "error_messages": sorted({s.error[:200] for s in errors + rejected}),
        "seconds": seconds,
        "searches_per_s": len(ok) / seconds if seconds else 0.0,
        "results_s": {f"p{q}": percentile([s.results_s for s in ok], q) for q in (50, 95)} if ok else {},
        "total_s": {f"p{q}": percentile([s.total_s for s in ok], q) for q in (50, 95)} if ok else {},
        "big_photo_s": big[0].total_s if big and not big[0].error else None,
        "big_photo_error": big[0].error if big else "",
        "page_answers": len(answers),
        "page_failures": len(answers) - len(finite),
        "page_s": {"p50": percentile(finite, 50), "p95": percentile(finite, 95), "max": max(finite)} if finite else {},
        "memory_mb": memory,
        "engine_ms": engine,
    }


def lanes_said() -> str:
    """How many searches the app ran at once, as the environment it was started with sets it."""
    from service import AppSettings

    lanes = AppSettings.from_environment().lanes
    if lanes == 1:
        return "one search at a time on every core (`FURNITURE_SEARCH_LANES=1`)"
    return f"a search alone on every core, up to {lanes} at once when others wait"


def render_markdown(summary: dict, info: dict, load_before: str) -> str:
    s = summary
    big = (f"{s['big_photo_s']:.1f} s" if s["big_photo_s"] is not None else f"failed: {s['big_photo_error']}") \
        if s["big_photo"] else "not sent"
    memory = s["memory_mb"]
    lines = [
        "# Load: the app under concurrent page clients",
        "",
        machine_line(info),
        f"Load average before the run: {load_before}. Command: `python -m benchmarks.load --clients {s['clients']} "
        f"--searches {s['searches_per_client']}{'' if s['big_photo'] else ' --no-big-photo'}`.",
        "",
        f"{s['clients']} clients × {s['searches_per_client']} searches (a 12 MP photo of its own each; each search as the page makes it: "
        "results, then regions), all started at once on 127.0.0.1"
        + (", with one 118 MP photo sent at the same moment." if s["big_photo"] else "."),
        "",
        "| | measured |",
        "|---|---|",
        f"| searches answered / errors / rejected as busy | {s['ok']} / {s['errors']} / {s['rejected']} |",
        f"| searches per second (whole burst, {s['seconds']:.1f} s) | {s['searches_per_s']:.2f} |",
        f"| one search, results: p50 / p95 | {s['results_s'].get('p50', float('nan')):.2f} s / "
        f"{s['results_s'].get('p95', float('nan')):.2f} s |",
        f"| one search, results and regions: p50 / p95 | {s['total_s'].get('p50', float('nan')):.2f} s / "
        f"{s['total_s'].get('p95', float('nan')):.2f} s |",
        f"| the 118 MP photo, results and regions | {big} |",
        f"| the page (`GET /`) during the burst: p50 / p95 / slowest ({s['page_answers']} requests, "
        f"{s['page_failures']} failed) | {s['page_s'].get('p50', float('nan')):.3f} s / "
        f"{s['page_s'].get('p95', float('nan')):.3f} s / {s['page_s'].get('max', float('nan')):.3f} s |",
        f"| the page while the {s['clients'] + 1} clients connected first ({s['connect_s']:.1f} s; each fetches the "
        f"app's config and API description): slowest | {s['page_s_while_connecting']:.3f} s |",
        f"| app resident memory: before / peak / after (growth) | {memory['before']:.0f} / {memory['peak']:.0f} / "
        f"{memory['after']:.0f} MB ({memory['after'] - memory['before']:+.0f} MB; peak {memory['peak'] - memory['before']:+.0f} MB) |",
        f"| engine alone, same photo, this process: search / region search (median) | "
        f"{s['engine_ms']['search']:.0f} ms / {s['engine_ms']['search_regions']:.0f} ms |",
        "",
    ]
    if s["error_messages"]:
        lines += ["Errors:", "", *[f"- {message}" for message in s["error_messages"]], ""]
    lines += [
        f"Searches share one queue (`concurrency_id=\"search\"`), {lanes_said()}; the wait in "
        "the queue is most of a search's time under a burst. A queue of more than 32 waiting requests is refused "
        "with Gradio's \"queue is full\" (counted as rejected).",
        "",
    ]
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=30, help="concurrent page clients (at most 64)")
    parser.add_argument("--searches", type=int, default=3, help="searches per client (at most 10)")
    parser.add_argument("--no-big-photo", action="store_true", help="do not send the 118 MP photo")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a request counts as failed")
    parser.add_argument("--port", type=int, default=0, help="port for the app (default: a free one)")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--output", type=Path, default=RESULTS / "load.md")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 1 <= args.searches <= 10:
        parser.error("--clients must be 1 to 64 and --searches 1 to 10 (this benchmark stays bounded)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    info = machine_info()
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    work = Path(tempfile.mkdtemp(prefix="furniture-load-"))
    source = next(iter(sorted(DEFAULT_QUERIES.glob("chair/*.jpg"))))
    # One photo per search (and a few for the engine alone, and to wait for the app with).
    photos = photo_series(source, PHONE_SIZE, work, args.clients * args.searches + ENGINE_PHOTOS + 1)
    photo, engine_photos, photos = photos[0], photos[1 : ENGINE_PHOTOS + 1], photos[ENGINE_PHOTOS + 1 :]
    big_photo = None if args.no_big_photo else phone_photo(source, BIG_SIZE, work / "photo-118mp.jpg", quality=60)
    print(f"photos: {photo.stat().st_size / 1e6:.1f} MB"
          + (f", {big_photo.stat().st_size / 1e6:.1f} MB (118 MP)" if big_photo else ""), flush=True)
    engine = engine_times(args.store, args.catalogue, engine_photos)
    print(f"engine alone: {engine}", flush=True)

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_app(port, args.catalogue, args.store, work / "app.log")
    try:
        wait_until_ready(url, photo, process)
        memory = {"before": resident_mb(process.pid)}
        stop = threading.Event()
        samples: list[float] = []
        sampler = threading.Thread(target=sample_memory, args=(process.pid, stop, samples), daemon=True)
        sampler.start()
        probe = probe_page(url, args.timeout * (args.searches + 2), work / "probe.txt")
        connect_started = time.time()
        with ThreadPoolExecutor(max_workers=args.clients + 1) as pool:
            clients = list(pool.map(connect, [url] * (args.clients + 1)))
            burst_started, begun = time.time(), time.perf_counter()
            big = pool.submit(run_client, clients[-1], -1, [big_photo], args.timeout, begun) if big_photo else None
            runs = [pool.submit(run_client, clients[n], n, photos[n * args.searches : (n + 1) * args.searches],
                                args.timeout, begun) for n in range(args.clients)]
            searches = [search for run in runs for search in run.result()]
            big_searches = big.result() if big else []
        seconds = time.perf_counter() - begun
        time.sleep(IDLE_WAIT_S)  # the app hands freed memory back once idle for app.IDLE_TRIM_S (2 s)
        stop.set()
        sampler.join()
        probe.terminate()
        probe.wait(timeout=10)
        probed = read_probe(work / "probe.txt")
        answers = [took for at, took in probed if burst_started <= at <= burst_started + seconds]
        connecting = [took for at, took in probed if connect_started <= at < burst_started]
        memory.update(peak=max(samples + [memory["before"]]), after=resident_mb(process.pid))
    finally:
        process.terminate()
        process.wait(timeout=30)

    summary = summarise(searches, big_searches, answers, memory, seconds, engine, args)
    summary["connect_s"] = burst_started - connect_started
    summary["page_s_while_connecting"] = max(connecting, default=float("nan"))
    markdown = render_markdown(summary, info, load_before)
    print(markdown)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown, encoding="utf-8")
    args.output.with_suffix(".json").write_text(
        json.dumps({"machine": info, "load_before": load_before, **summary}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
