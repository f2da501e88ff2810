import numpy as np
import pytest

from conftest import make_digits
from digitlab.data.dataset import Dataset


def test_dataset_rejects_wrong_shapes_and_labels():
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        Dataset(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        Dataset(np.zeros((3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="3 images"):
        Dataset(np.zeros((3, 28, 28), np.uint8), np.zeros(2, int))
    with pytest.raises(ValueError, match="0..9"):
        Dataset(np.zeros((1, 28, 28), np.uint8), np.array([10]))


def test_split_by_fraction_is_stratified_seeded_and_disjoint():
    dataset = make_digits(1000)
    train, validation = dataset.split(0.1, seed=3)
    assert len(train) == 900 and len(validation) == 100
    assert validation.class_counts().tolist() == [10] * 10
    again_train, again_validation = dataset.split(0.1, seed=3)
    assert np.array_equal(validation.images, again_validation.images)
    _, other = dataset.split(0.1, seed=4)
    assert not np.array_equal(validation.images, other.images)
    seen = {image.tobytes() for image in train.images}
    assert not any(image.tobytes() in seen for image in validation.images)


def test_split_by_count_keeps_exact_total_with_uneven_classes():
    images = np.zeros((103, 28, 28), np.uint8)
    labels = np.array([0] * 50 + [1] * 30 + [2] * 23)
    train, validation = Dataset(images, labels).split(17, seed=0)
    assert len(validation) == 17 and len(train) == 86
    counts = validation.class_counts()
    assert abs(counts[0] - 50 * 17 / 103) < 1 and abs(counts[2] - 23 * 17 / 103) < 1


@pytest.mark.parametrize("size", [0, 1.0, 1.5, -0.2, 60, "ten"])
def test_split_refuses_sizes_that_leave_nothing(size):
    with pytest.raises(ValueError, match="validation"):
        make_digits(60).split(size)


def test_split_names_each_side_by_its_role_never_twice():
    train, validation = make_digits(60).split(0.2)
    assert (train.name, validation.name) == ("generated-train", "generated-validation")
    again_train, again_validation = train.split(0.25)
    assert (again_train.name, again_validation.name) == ("generated-train", "generated-validation")
    _, limited = validation.split(5)
    assert limited.name == "generated-validation"
