"""The HTTP API for shops: in-process with FastAPI's test client (fast), then against the running app."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from engine.errors import ServiceUnavailableError
from engine.networks import thread_count
from http_api import ApiContext, create_api
from service import SearchSlot, new_searches
from tests.conftest import draw_furniture
from tests.test_page_handlers import huge_png, room_photo


def jpeg(category: str, colour=(30, 90, 200), variant: int = 0, size: int = 400) -> bytes:
    buffer = io.BytesIO()
    draw_furniture(category, colour, variant, size=size).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(search_engine):
    return TestClient(create_api(ApiContext(engine=lambda: search_engine, status=lambda: "ready", searches=new_searches())))


def test_search_answers_with_the_cli_json_and_image_urls(client, search_engine):
    answer = client.post("/api/search", files={"image": ("chair.jpg", jpeg("chair"), "image/jpeg")}, data={"k": "3"})
    assert answer.status_code == 200
    line = answer.json()
    assert line["query"] == "chair.jpg" and line["category"] == "chair"
    assert len(line["results"]) == 3
    first = line["results"][0]
    assert {"id", "name", "category", "score", "path", "image"} <= set(first)
    assert first["image"] == f"/api/images/{search_engine.stored.images[search_engine.image_rows[first['image'].rsplit('/', 1)[1]]].digest}"
    assert not first["path"].startswith("/") and first["path"].endswith(".jpg")  # in the catalogue, not on the server
    served = client.get(first["image"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.content == (search_engine.catalogue / first["path"]).read_bytes()


def test_a_colour_refines_and_items_list_their_colours(client, search_engine):
    answer = client.post("/api/search", files={"image": ("chair.jpg", jpeg("chair"))}, data={"colour": "#c81e28"})
    assert answer.status_code == 200 and answer.json()["colour"] == "#c81e28"
    first = answer.json()["results"][0]
    assert first["colour_match"] >= 0 and first["colours"][0]["name"]
    described = client.get(f"/api/items/{first['id']}").json()
    assert described["colours"] and set(described["colours"][0]) == {"hex", "name", "share"}


def test_regions_and_a_category_by_name(client, tmp_path):
    photo = room_photo(tmp_path / "room.jpg", 1600, 800).read_bytes()
    line = client.post("/api/search", files={"image": ("room.jpg", photo)},
                       data={"regions": "true", "max_regions": "3", "k": "2"}).json()
    assert 1 <= len(line["regions"]) <= 3
    assert all(len(region["results"]) == 2 and region["results"][0]["image"] for region in line["regions"])
    line = client.post("/api/search", files={"image": ("room.jpg", photo)}, data={"category": "lamp", "k": "2"}).json()
    assert line["searched"] == ["lamp"] and all(r["category"] == "lamp" for r in line["results"])


def test_by_default_a_scene_answers_with_its_pieces_and_a_product_shot_with_the_whole_photo(client, tmp_path):
    # As the page does it: the pieces with their boxes and results, the main piece's results first.
    room = room_photo(tmp_path / "room.jpg", 1600, 800).read_bytes()
    line = client.post("/api/search", files={"image": ("room.jpg", room)}, data={"k": "3"}).json()
    assert line["regions"] and all(len(region["box"]) == 4 and region["results"] for region in line["regions"])
    assert [r["id"] for r in line["results"]] == [r["id"] for r in line["regions"][0]["results"]]
    whole = client.post("/api/search", files={"image": ("room.jpg", room)}, data={"k": "3", "regions": "false"}).json()
    assert "regions" not in whole
    shot = client.post("/api/search", files={"image": ("chair.jpg", jpeg("chair"))}, data={"k": "3"}).json()
    assert "regions" not in shot and len(shot["results"]) == 3


@pytest.mark.parametrize("data, upload, status, message", [
    ({}, ("notes.txt", b"just some text"), 400, "not a supported image"),
    ({}, ("broken.jpg", b"\xff\xd8\xff\xe0 broken"), 400, "damaged or incomplete"),
    ({"k": "abc"}, None, 400, "k must be a whole number"),
    ({"k": "0"}, None, 400, "k must be a whole number"),
    ({"max_regions": "-1", "regions": "true"}, None, 400, "max_regions must be a whole number"),
    ({"category": "wardrobe"}, None, 400, "unknown category 'wardrobe'"),
    ({"colour": "bluish"}, None, 400, "unknown colour 'bluish'"),
])
def test_bad_requests_get_json_errors_with_our_messages(client, data, upload, status, message):
    answer = client.post("/api/search", files={"image": upload or ("chair.jpg", jpeg("chair"))}, data=data)
    assert answer.status_code == status
    assert answer.json()["status"] == status and message in answer.json()["error"]


def test_too_large_files_and_pixel_bombs_are_refused(client, tmp_path, monkeypatch):
    bomb = huge_png(tmp_path / "bomb.png").read_bytes()
    answer = client.post("/api/search", files={"image": ("bomb.png", bomb)})
    assert answer.status_code == 413 and "too large" in answer.json()["error"]
    monkeypatch.setattr("http_api.MAX_FILE_BYTES", 1000)
    answer = client.post("/api/search", files={"image": ("big.jpg", jpeg("chair"))})
    assert answer.status_code == 413 and "too large" in answer.json()["error"]


@pytest.mark.parametrize("data, files, message", [
    ({"k": "3"}, None, "send a multipart form"),
    ({"k": "3"}, {"other": ("x.txt", b"x")}, "unknown field 'other'"),
    ({"k": "3", "colour": "red"}, {"image": ("", b"")}, "the photo is missing"),
    ({"k": ""}, "photo", "k must be a whole number"),
    ({"regions": "yes"}, "photo", "regions must be auto, true or false"),
    ({"regionz": "true"}, "photo", "unknown field 'regionz'"),
    ({"image": "not a file"}, None, "send a multipart form"),
])
def test_a_malformed_request_is_a_clear_error_in_the_one_shape(client, data, files, message):
    files = {"image": ("chair.jpg", jpeg("chair"))} if files == "photo" else files
    answer = client.post("/api/search", data=data, files=files)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": answer.json()["error"], "status": 400} and message in answer.json()["error"]


def test_a_field_given_twice_and_unknown_routes_answer_in_the_one_shape(client):
    answer = client.post("/api/search", files=[("image", ("a.jpg", jpeg("chair"))), ("k", (None, "2")), ("k", (None, "3"))])
    assert answer.status_code == 400 and "given more than once" in answer.json()["error"]
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    wrong = client.get("/api/search")
    assert wrong.status_code == 405 and wrong.json()["status"] == 405


def test_the_api_docs_are_one_page_that_needs_nothing_from_outside(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and "POST /api/search" in page.text and "max_regions" in page.text
    assert "http://" not in page.text.replace("http://HOST", "") and "https://" not in page.text


def test_items_describe_a_product_or_say_it_is_unknown(client, search_engine):
    product_id = search_engine.stored.images[0].product_id
    item = client.get(f"/api/items/{product_id}").json()
    assert item["id"] == product_id and item["images"] and all(url.startswith("/api/images/") for url in item["images"])
    assert client.get(item["images"][0]).status_code == 200
    assert client.get("/api/images/no-such-image").status_code == 404
    missing = client.get("/api/items/no-such-product")
    assert missing.status_code == 404 and "no product" in missing.json()["error"]


def test_not_ready_yet_is_503_with_the_status(search_engine):
    loading = TestClient(create_api(ApiContext(engine=lambda: None, status=lambda: "⏳ Loading the catalogue index…",
                                               searches=new_searches())))
    answer = loading.post("/api/search", files={"image": ("chair.jpg", jpeg("chair"))})
    assert answer.status_code == 503 and answer.json()["error"] == "Loading the catalogue index…"
    assert answer.headers["retry-after"] == "5"


def test_the_search_slot_lets_a_bounded_number_wait():
    slot = SearchSlot(max_waiting=1, timeout_s=5, lanes=1)
    entered = threading.Event()
    release = threading.Event()

    def hold():
        with slot:
            entered.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(5)
    waiter = threading.Thread(target=lambda: slot.__enter__() and slot.__exit__())
    waiter.start()
    deadline = threading.Event()
    deadline.wait(0.2)  # the waiter is now waiting: a third caller is told the service is busy
    with pytest.raises(ServiceUnavailableError, match="busy"):
        with slot:
            pass
    release.set()
    holder.join(5)
    waiter.join(5)
    assert not waiter.is_alive()
    with SearchSlot(max_waiting=1, timeout_s=0.1, lanes=1) as held:  # a slot taken for too long: busy, not a stall
        with pytest.raises(ServiceUnavailableError, match="busy"):
            with held:
                pass


def test_a_search_alone_has_every_core_and_one_more_joins_it_on_one_core():
    slot = SearchSlot(max_waiting=4, timeout_s=5, cores=2)
    alone_inside, release = threading.Event(), threading.Event()
    both_inside = threading.Barrier(3, timeout=5)  # the two waiters and this test
    threads_seen = {}

    def alone():
        with slot:
            threads_seen["alone"] = thread_count()
            alone_inside.set()
            release.wait(5)

    def waiter(name: str):
        with slot:
            threads_seen[name] = thread_count()
            both_inside.wait()  # passes only while both waiters are inside at once

    first = threading.Thread(target=alone)
    first.start()
    assert alone_inside.wait(5)
    waiters = [threading.Thread(target=waiter, args=(name,)) for name in ("a", "b")]
    for thread in waiters:
        thread.start()
    threading.Event().wait(0.2)  # one joined the search running alone, on one core; two lanes: the other waits
    assert len({"a", "b"} & threads_seen.keys()) == 1
    release.set()
    both_inside.wait()
    for thread in (first, *waiters):
        thread.join(5)
    assert threads_seen == {"alone": 2, "a": 1, "b": 1}


def test_with_one_lane_searches_run_one_at_a_time_on_every_core():
    slot = SearchSlot(max_waiting=4, timeout_s=5, cores=2, lanes=1)
    inside, release = threading.Event(), threading.Event()
    threads_seen = []

    def search():
        with slot:
            threads_seen.append(thread_count())
            inside.set()
            release.wait(5)

    first = threading.Thread(target=search)
    first.start()
    assert inside.wait(5)
    second = threading.Thread(target=search)
    second.start()
    threading.Event().wait(0.2)
    assert threads_seen == [2]  # the second waits for the first
    release.set()
    for thread in (first, second):
        thread.join(5)
    assert threads_seen == [2, 2]


@pytest.mark.slow
def test_the_running_app_answers_curl_style_posts_and_a_burst(tmp_path):
    from gradio_client import Client

    from tests.test_app import start_app, wait_until_indexed

    process, url = start_app(tmp_path)
    try:
        photo = tmp_path / "lamp.jpg"
        photo.write_bytes(jpeg("lamp", (200, 40, 40), 1))
        wait_until_indexed(Client(url, verbose=False, download_files=False), photo)

        def post(fields: dict[str, str], image: bytes) -> tuple[int, dict]:
            boundary = uuid.uuid4().hex
            parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                     for name, value in fields.items()]
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
                         f"Content-Type: image/jpeg\r\n\r\n".encode() + image + b"\r\n")
            body = b"".join(parts) + f"--{boundary}--\r\n".encode()
            request = urllib.request.Request(f"{url}/api/search", data=body, method="POST",
                                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        status, line = post({"k": "2"}, photo.read_bytes())
        assert status == 200 and line["category"] == "lamp"
        image = urllib.request.urlopen(url + line["results"][0]["image"], timeout=10).read()
        assert image == (tmp_path / "catalogue" / line["results"][0]["path"]).read_bytes()
        status, line = post({}, b"not an image")
        assert status == 400 and "not a supported image" in line["error"]
        # A burst of 24 at once: each answered or told the service is busy, never an error or a stall.
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(lambda _: post({"k": "3"}, photo.read_bytes()), range(24)))
        assert {status for status, _ in answers} <= {200, 503}
        assert sum(status == 200 for status, _ in answers) >= 8
        assert all("busy" in line["error"] for status, line in answers if status == 503)
        with urllib.request.urlopen(f"{url}/api/docs", timeout=10) as docs:
            assert docs.status == 200
        with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=10) as spec:
            assert "/api/search" in json.loads(spec.read())["paths"]
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_api_searches_take_the_shared_turn_and_give_memory_back_when_idle(search_engine):
    from service import Searches

    class CountingTrim:

        def __init__(self):
            self.calls = []

        def started(self):
            self.calls.append("started")

        def finished(self):
            self.calls.append("finished")

    trim = CountingTrim()
    api = TestClient(create_api(ApiContext(engine=lambda: search_engine, status=lambda: "ready",
                                           searches=Searches(SearchSlot(), trim))))
    assert api.post("/api/search", files={"image": ("chair.jpg", jpeg("chair"))}).status_code == 200
    assert trim.calls == ["started", "finished"]


def test_a_search_that_takes_too_long_is_answered_not_waited_for(client, search_engine, monkeypatch):
    import time as clock

    real = search_engine.search
    monkeypatch.setattr(search_engine, "search", lambda *args, **kwargs: clock.sleep(0.5) or real(*args, **kwargs))
    monkeypatch.setattr("http_api.REQUEST_TIMEOUT_S", 0.1)
    started = clock.perf_counter()
    answer = client.post("/api/search", files={"image": ("chair.jpg", jpeg("chair"))})
    assert answer.status_code == 503 and "took longer" in answer.json()["error"]
    assert clock.perf_counter() - started < 0.45
    clock.sleep(0.6)  # the abandoned search finishes and frees the slot


def test_a_shops_results_carry_its_fields_and_meet_the_filter(shop_store):
    from engine.search import SearchEngine

    engine = SearchEngine.open(shop_store)
    shop = TestClient(create_api(ApiContext(engine=lambda: engine, status=lambda: "ready", searches=new_searches())))
    photo = (engine.catalogue / engine.stored.images[0].path).read_bytes()
    answer = shop.post("/api/search", files={"image": ("p.jpg", photo)},
                       data={"k": "12", "category": "all", "where": "availability=in_stock; price<900"})
    assert answer.status_code == 200, answer.text
    line = answer.json()
    assert line["where"] == "availability=in_stock; price<900" and line["results"]
    for result in line["results"]:
        assert result["availability"] == "in_stock" and result["url"].startswith("https://shop.example/products/")
        assert float((result.get("sale_price") or result["price"]).split()[0]) < 900 and result["brand"]
    described = shop.get(f"/api/items/{line['results'][0]['id']}").json()
    assert described["price"].endswith(" EUR") and described["availability"] == "in_stock"
    refused = shop.post("/api/search", files={"image": ("p.jpg", photo)}, data={"where": "weight<3"})
    assert refused.status_code == 400 and "cannot filter on 'weight'" in refused.json()["error"]
