"""The box benchmark's matching (hand-made cases, no model) and the hand-labelled room boxes it reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.boxes import ANY, CLASSES, DEFAULT_LABELS, Counts, Labelled, Predicted, iou, load_labels, match_boxes

SPLIT = Path(__file__).resolve().parent.parent.parent / "shared" / "real-photos" / "split.json"
CHAIR = Labelled((100, 100, 200, 300), "chair")
TABLE = Labelled((300, 100, 500, 250), "table")


def counts(result: dict, category: str) -> tuple[int, int, int, int]:
    c = result.get(category, Counts())  # a class with no box and no label has no entry
    return c.true_boxes, c.false_boxes, c.found, c.missed


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges share no area
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)


def test_perfect_boxes_are_all_true_and_nothing_is_missed():
    result = match_boxes([Predicted(CHAIR.box, "chair", 0.9), Predicted(TABLE.box, "table", 0.8)], [CHAIR, TABLE])
    assert counts(result, "chair") == (1, 0, 1, 0) and counts(result, "table") == (1, 0, 1, 0)
    assert result[ANY].precision == 1.0 and result[ANY].recall == 1.0


def test_a_box_of_the_wrong_class_is_false_but_finds_the_piece_when_the_class_is_ignored():
    predicted, labelled = [Predicted(CHAIR.box, "sofa", 0.9)], [CHAIR]
    strict = match_boxes(predicted, labelled)
    assert counts(strict, "sofa") == (0, 1, 0, 0) and counts(strict, "chair") == (0, 0, 0, 1)
    loose = match_boxes(predicted, labelled, by_class=False)
    assert counts(loose, "sofa") == (1, 0, 0, 0) and counts(loose, "chair") == (0, 0, 1, 0)
    assert loose[ANY].recall == 1.0 and strict[ANY].recall == 0.0


def test_a_second_box_on_one_piece_is_one_false_positive_and_the_better_scored_box_counts():
    shifted = (105, 100, 205, 300)  # IoU 0.9 with the chair
    result = match_boxes([Predicted(shifted, "chair", 0.4), Predicted(CHAIR.box, "chair", 0.9)], [CHAIR])
    assert counts(result, "chair") == (1, 1, 1, 0)
    assert result["chair"].precision == 0.5 and result["chair"].recall == 1.0


def test_a_box_takes_the_free_label_of_highest_overlap():
    left, right = Labelled((0, 0, 100, 100), "chair"), Labelled((20, 0, 120, 100), "chair")
    # The first box overlaps both (IoU 0.74 and 0.90) and takes "right"; the second fits only "left" (0.75 vs 0.46):
    # had the first taken "left", the second would be a false positive.
    result = match_boxes([Predicted((15, 0, 115, 100), "chair", 0.9), Predicted((0, 0, 75, 100), "chair", 0.5)],
                         [left, right])
    assert counts(result, "chair") == (2, 0, 2, 0)


def test_difficult_labels_are_neither_required_nor_false_positives():
    hidden = Labelled((600, 50, 630, 80), "lamp", difficult=True)
    assert counts(match_boxes([], [hidden]), "lamp") == (0, 0, 0, 0)  # not missed
    twice = [Predicted(hidden.box, "lamp", 0.9), Predicted(hidden.box, "lamp", 0.8)]
    result = match_boxes(twice, [hidden])
    assert counts(result, "lamp") == (0, 0, 0, 0)  # neither true nor false, however many boxes
    assert result[ANY].precision is None and result[ANY].recall is None


def test_an_overlap_just_under_one_half_does_not_count():
    label = Labelled((0, 0, 100, 100), "table")
    under, at = (0, 0, 100, 49), (0, 0, 100, 50)  # IoU 0.49 and 0.50
    assert iou(under, label.box) < 0.5 <= iou(at, label.box)
    assert counts(match_boxes([Predicted(under, "table", 1.0)], [label]), "table") == (0, 1, 0, 1)
    assert counts(match_boxes([Predicted(at, "table", 1.0)], [label]), "table") == (1, 0, 1, 0)


def test_the_room_labels_are_well_formed():
    data = json.loads(DEFAULT_LABELS.read_text(encoding="utf-8"))
    assert tuple(data["classes"]) == CLASSES and "Tautkute" in data["about"]
    rooms = data["rooms"]
    assert len(rooms) >= 40 and list(rooms) == sorted(rooms)
    for name, pieces in rooms.items():
        for piece in pieces:
            assert set(piece) <= {"class", "box", "difficult"}, name
            assert piece["class"] in CLASSES, name
            x0, y0, x1, y1 = box = piece["box"]
            assert len(box) == 4 and all(type(v) is int for v in box), name
            assert 0 <= x0 < x1 and 0 <= y0 < y1, name
            assert piece.get("difficult", True) is True, name  # present only when true
    assert sum(len(pieces) for pieces in load_labels(DEFAULT_LABELS).values()) == sum(map(len, rooms.values()))
    if SPLIT.is_file():
        dev_rooms = set(json.loads(SPLIT.read_text(encoding="utf-8"))["dev_rooms"])
        assert set(rooms) <= dev_rooms
