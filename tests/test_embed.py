import numpy as np

from engine import embed as embed_module
from engine.backbone_specs import DEFAULT_BACKBONE
from engine.embed import embed_images
from engine.networks import CPU_BATCH, load_backbone, pass_size
from tests.conftest import draw_furniture


def test_images_are_embedded_a_few_to_a_pass_in_their_order(monkeypatch):
    backbone = load_backbone(DEFAULT_BACKBONE)
    images = [draw_furniture(kind, colour, seed) for seed, (kind, colour) in
              enumerate([("chair", (200, 30, 30)), ("lamp", (20, 90, 200)), ("bed", (90, 90, 90))])]
    passes = []
    real = embed_module.embed_batch
    monkeypatch.setattr(embed_module, "embed_batch", lambda net, batch: passes.append(len(batch)) or real(net, batch))
    together = embed_images(backbone, images)
    assert pass_size() == CPU_BATCH and sum(passes) == 3 and max(passes) == min(CPU_BATCH, 3)
    alone = np.concatenate([embed_images(backbone, [image]) for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert embed_images(backbone, []).shape == (0, backbone.spec.feature_dim)
