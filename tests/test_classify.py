import numpy as np

from engine.classify import CategoryClassifier, fit_classifier
from engine.vectors import normalise


def clusters(rng, centres, counts, spread=0.3):
    vectors, labels = [], []
    for name, centre, count in zip(("bed", "lamp", "sofa"), centres, counts):
        vectors.append(centre + spread * rng.standard_normal((count, centres.shape[1])))
        labels += [name] * count
    return normalise(np.concatenate(vectors)), labels


def test_separates_categories_with_calibrated_probabilities():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 64))
    train, labels = clusters(rng, centres, [40, 40, 40])
    test, truth = clusters(rng, centres, [10, 10, 10])
    classifier = fit_classifier(train, labels)
    probabilities = classifier.predict_proba(test)
    assert classifier.categories == ["bed", "lamp", "sofa"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    predicted = [classifier.categories[i] for i in probabilities.argmax(axis=1)]
    assert np.mean([p == t for p, t in zip(predicted, truth)]) >= 0.95
    assert probabilities.max(axis=1).mean() > 0.8


def test_small_category_is_not_drowned_out():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((3, 32))
    train, labels = clusters(rng, centres, [200, 200, 5], spread=0.6)
    classifier = fit_classifier(train, labels)
    test, _ = clusters(rng, centres, [0, 0, 20], spread=0.6)
    predicted = classifier.predict_proba(test).argmax(axis=1)
    assert np.mean(predicted == classifier.categories.index("sofa")) >= 0.8


def test_round_trip_through_arrays():
    rng = np.random.default_rng(2)
    train, labels = clusters(rng, rng.standard_normal((3, 16)), [5, 5, 5])
    classifier = fit_classifier(train, labels)
    restored = CategoryClassifier.from_arrays(classifier.to_arrays())
    np.testing.assert_allclose(restored.predict_proba(train), classifier.predict_proba(train))


def test_single_category_is_certain():
    classifier = fit_classifier(normalise(np.ones((3, 8))), ["lamp"] * 3)
    assert classifier.predict_proba(normalise(np.ones((1, 8))))[0].tolist() == [1.0]


def test_indexing_and_searching_never_import_torch(built_store, tmp_path):
    # torch is ~530 MB resident: the app's process, a first start that indexes included, runs without it.
    import subprocess
    import sys
    from pathlib import Path

    catalogue, _ = built_store
    code = ("import sys; from engine.indexing import index_catalogue; from engine.search import SearchEngine; "
            f"index_catalogue({str(catalogue)!r}, {str(tmp_path / 'store')!r}); "
            f"engine = SearchEngine.open({str(tmp_path / 'store')!r}); "
            f"print(engine.search(next(iter(sorted(engine.catalogue.rglob('*.jpg')))), 3).category, 'torch' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert ran.returncode == 0, ran.stderr
    category, imported = ran.stdout.split()[-2:]
    assert category in {"bed", "chair", "lamp", "sofa", "table"} and imported == "False"


def test_the_fit_leaves_the_processs_blas_threads_as_they_were():
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info()]
    vectors, labels = clusters(np.random.default_rng(2), np.eye(3, 16), [20, 20, 20])
    fit_classifier(vectors, labels)
    assert [pool["num_threads"] for pool in threadpool_info()] == before
