"""The unit of indexing work: a batch decoded, its colours found and embedded; batches pipelined give the same."""

from __future__ import annotations

import numpy as np

from engine.backbone_specs import DEFAULT_BACKBONE, get_spec
from engine.backbones import load_backbone
from engine.batches import ImageJob, process_batch, process_batches


def test_pipelined_batches_give_what_each_batch_in_turn_gives_failures_included(catalogue, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    paths = sorted(str(p) for p in catalogue.rglob("*.jpg"))[:7] + [str(tmp_path / "broken.jpg")]
    jobs = [ImageJob(i, path, embed=i % 3 != 0) for i, path in enumerate(paths)]
    batches = [jobs[:3], jobs[3:6], jobs[6:]]
    extractor, side = load_backbone(DEFAULT_BACKBONE), get_spec(DEFAULT_BACKBONE).preprocessing.size
    each = [process_batch(batch, extractor, side) for batch in batches]
    pipelined = list(process_batches(batches, extractor, side))
    assert [[r.position for r in batch] for batch in pipelined] == [[j.position for j in batch] for batch in batches]
    for one, other in zip(sum(each, []), sum(pipelined, [])):
        assert (one.error, one.colours) == (other.error, other.colours)
        assert (one.vector is None) == (other.vector is None) == (not jobs[one.position].embed or bool(one.error))
        if one.vector is not None:
            np.testing.assert_allclose(one.vector, other.vector, atol=1e-5)
    assert pipelined[-1][-1].error  # the broken file: a reason, and the batch goes on
    assert list(process_batches([], extractor, side)) == []
