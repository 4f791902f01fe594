import json

from engine.cli import main


def test_index_search_info_round_trip(catalogue, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["index", "--catalogue", str(catalogue), "--store", str(store)]) == 0
    out = capsys.readouterr()
    assert "indexed 24 images" in out.out
    assert "lamp" in out.out and "4 products" in out.out
    assert "24/24 images" in out.err  # the progress bar reached the end

    query = catalogue / "chair" / "chair-3" / "view0.jpg"
    assert main(["search", "--store", str(store), "--k", "3", str(query)]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    answer = json.loads(line)
    assert answer["query"] == str(query)
    assert answer["category"] == "chair"
    assert set(answer["probabilities"]) == {"chair", "lamp", "table"}
    assert answer["searched"] == ["chair"]
    assert len(answer["results"]) == 3
    assert set(answer["results"][0]) == {"id", "name", "category", "score", "path", "colours", "colour_match"}
    assert answer["results"][0]["id"] == "chair-3"

    assert main(["info", "--store", str(store)]) == 0
    info = capsys.readouterr().out
    assert "efficientnet_lite0" in info and "up to date" in info and "chair" in info
    # The test catalogue's categories are not the bundled one's: region search says it ranks without the scorer.
    assert "regions:   untrained contrast ranking (the trained window scorer knows bed, chair, lamp, sofa, table" in info


def test_search_folder_and_bad_files_in_one_process(built_store, tmp_path, capsys):
    catalogue, store = built_store
    queries = tmp_path / "queries"
    queries.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (queries / name).write_bytes((catalogue / "lamp" / "lamp-1" / "view0.jpg").read_bytes())
    (queries / "broken.png").write_bytes(b"nope")
    status = main(["search", "--store", str(store), "--category", "all", "--k", "2", str(queries)])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert status == 1  # one query failed; the others still answered
    assert [line["query"].rsplit("/", 1)[1] for line in lines] == ["a.jpg", "b.jpg", "broken.png"]
    assert lines[0]["results"][0]["id"] == "lamp-1" and lines[0]["searched"] == ["all"]
    assert "error" in lines[2] and "results" not in lines[2]


def test_user_errors_are_messages_not_tracebacks(tmp_path, capsys, built_store):
    _, store = built_store
    assert main(["search", "--store", str(tmp_path / "missing"), "x.jpg"]) == 2
    assert "error: no index in" in capsys.readouterr().err
    assert main(["index", "--catalogue", str(tmp_path / "nope"), "--store", str(tmp_path / "s")]) == 2
    assert "catalogue folder not found" in capsys.readouterr().err
    # A folder of queries without images says so instead of printing nothing.
    assert main(["search", "--store", str(store), str(tmp_path)]) == 2
    assert "no image files in the folder" in capsys.readouterr().err
    query = tmp_path / "q.png"
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(query)
    assert main(["search", "--store", str(store), "--category", "wardrobe", str(query)]) == 2
    assert "unknown category 'wardrobe'" in capsys.readouterr().err


def test_search_by_colour_and_a_colour_not_understood(built_store, capsys):
    catalogue, store = built_store
    query = catalogue / "lamp" / "lamp-1" / "view0.jpg"
    assert main(["search", "--store", str(store), "--k", "2", "--colour", "navy", str(query)]) == 0
    answer = json.loads(capsys.readouterr().out.strip())
    assert answer["colour"] == "navy" and all(0 <= r["colour_match"] <= 1 for r in answer["results"])
    assert {"hex", "name", "share"} == set(answer["results"][0]["colours"][0])
    assert main(["search", "--store", str(store), "--colour", "bluish", str(query)]) == 2
    assert "unknown colour 'bluish'" in capsys.readouterr().err
