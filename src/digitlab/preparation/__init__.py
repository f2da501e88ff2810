"""Turning people's own digits (photos, scans, drawings) into MNIST-style 28x28 images.

MNIST digits are white ink on black, the digit scaled (anti-aliased, aspect ratio kept) so that
its longer side is 20 pixels and placed in a 28x28 image with its centre of mass at the centre.
A model trained on them guesses when fed anything else, so every image a user gives is prepared
the same way, here, whether it comes from `digitlab predict`, an image folder or a drawing:

1. `open_image`: any common image file, bytes or PIL image becomes 8-bit grey, EXIF rotation
   applied, transparency resolved (a canvas drawing whose alpha channel holds the strokes gives
   dark strokes on white, whatever their colour).
2. `to_grey_ink`: the ink as floats in [0, 1], 1 = full ink, background exactly 0. The paper's
   uneven lighting is modelled by a smooth surface fitted robustly and divided out, the polarity
   (dark on light or light on dark) is read from which side of the background the strong
   differences lie, and the ink levels are stretched but kept (anti-aliased edges stay grey).
   Specks too small to be strokes are removed.
3. `segment`: connected pieces of ink; what lies around the paper (a dark table, a shadow at
   the edge) and stray dots dropped, pieces of one digit (a 5's hat, a broken stroke) merged,
   one `Box` per digit from left to right.
4. `to_mnist`: each digit cropped, strokes thickened when a thin pen would vanish at 20 pixels,
   scaled into 20x20 and centred by centre of mass in 28x28, uint8 white on black.

`prepare` (in `digits`) runs all four. A 28x28 image that is already MNIST-style comes out as
it went in. Each step is a module here (`opening`, `ink` with `paper`, `segmenting`,
`mnist_form`); `operations` holds the image operations they share. Filters come from
scipy.ndimage; decoding plain grey PNGs, connected components and dilation from OpenCV, about
ten times faster on the small scans that batch reading goes through by the thousand.
"""
from digitlab.preparation.digits import Prepared, prepare
from digitlab.preparation.ink import to_grey_ink
from digitlab.preparation.mnist_form import to_mnist
from digitlab.preparation.opening import MAX_PIXELS, ImageSource, high_depth_grey, image_errors, open_image
from digitlab.preparation.segmenting import MAX_DIGITS, Box, segment

__all__ = [
    "MAX_DIGITS", "MAX_PIXELS", "Box", "ImageSource", "Prepared", "high_depth_grey", "image_errors", "open_image",
    "prepare", "segment", "to_grey_ink", "to_mnist",
]
