"""benchmarks.browser: a photo's steps read from the page's requests, and how benchmarks.app reports them."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.app import browser_steps
from benchmarks.browser import Timeline


@dataclass
class Request:
    method: str
    url: str


class Page:
    """What Timeline needs of a Playwright page: its request events, fired by hand."""

    def __init__(self) -> None:
        self.handlers: dict[str, list] = {}

    def on(self, event: str, handler) -> None:
        self.handlers.setdefault(event, []).append(handler)

    def fire(self, event: str, method: str, path: str) -> None:
        for handler in self.handlers.get(event, []):
            handler(Request(method, "http://127.0.0.1:7860" + path))


def noted(timeline: Timeline, events: list[tuple[float, str, str, str]]) -> dict[str, float]:
    """``timeline``'s steps for requests seen at the given seconds after its start."""
    timeline.seen = [(at, kind, method, "http://127.0.0.1:7860" + path) for at, kind, method, path in events]
    return timeline.steps()


def test_steps_follow_one_another():
    timeline = Timeline(Page())
    events = [
        (0.01, "requestfinished", "GET", "/gradio_api/queue/data?session_hash=a"),  # the last photo's answer
        (0.03, "request", "POST", "/gradio_api/upload?upload_id=b"),
        (0.05, "requestfinished", "POST", "/gradio_api/upload?upload_id=b"),
        (0.09, "request", "POST", "/gradio_api/queue/join?"),
        (0.10, "request", "POST", "/gradio_api/queue/join?"),  # the crop's event, after the search's
        (0.30, "requestfinished", "GET", "/gradio_api/queue/data?session_hash=a"),
    ]
    assert noted(timeline, events) == {"uploaded": 0.05, "asked": 0.09, "answered": 0.30}


def test_a_step_not_seen_ends_the_steps():
    timeline = Timeline(Page())
    events = [(0.05, "requestfinished", "POST", "/gradio_api/upload"),
              (0.30, "requestfinished", "GET", "/gradio_api/queue/data")]  # never asked for: not an answer
    assert noted(timeline, events) == {"uploaded": 0.05}


def test_only_requests_after_start_are_noted():
    page = Page()
    timeline = Timeline(page)
    page.fire("request", "POST", "/gradio_api/upload")  # before start(): not this photo's
    assert timeline.seen == []
    timeline.start()
    page.fire("requestfinished", "POST", "/gradio_api/upload")
    assert [(kind, method) for _, kind, method, _ in timeline.seen] == [("requestfinished", "POST")]


def test_report_gives_each_step_and_the_server_share():
    rounds = [{"uploaded": 0.05, "asked": 0.10, "answered": 0.30, "results": 0.35, "boxes": 0.40},
              {"uploaded": 0.07, "asked": 0.12, "answered": 0.34, "results": 0.39, "boxes": 0.42}]
    text = browser_steps(rounds)
    assert text.startswith("uploaded 60 ms, search asked for 110 ms, answer in 320 ms, results shown 370 ms")
    assert text.endswith("(asked → answered: 210 ms)")


def test_report_gives_the_browsers_cpu():
    rounds = [{"asked": 0.10, "answered": 0.30, "results": 0.35, "browser_cpu": 0.40},
              {"asked": 0.12, "answered": 0.34, "results": 0.39, "browser_cpu": 0.50}]
    text = browser_steps(rounds)
    assert "results shown 370 ms (asked → answered: 210 ms); " in text
    assert text.endswith("Chromium's CPU a photo, on the same cores: 450 ms")
