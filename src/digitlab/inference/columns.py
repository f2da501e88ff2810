"""The columns of the predictions `digitlab predict` writes for a data source, by shard or whole.

Each image has an `id`, counting from 1 as a Kaggle submission's ImageId does (row `id` of the
predictions is row `ImageId` of the submission of the same source), its predicted `label` and
the ten probabilities `p0..p9`. Predictions by shard of image files add each file's `path` and
`status`, since a file may hold no digit or be no image at all. Kept apart from the writing
itself, so planning shards needs no Keras.
"""

from digitlab.shape import NUM_CLASSES

FIRST_ID = 1
PREDICTION_COLUMNS = ["id", "label", *(f"p{digit}" for digit in range(NUM_CLASSES))]
FILE_COLUMNS = ["path", "status"]
