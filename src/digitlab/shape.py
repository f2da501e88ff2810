"""What a digit image is to every stage: MNIST's 28x28 pixels, one of ten classes."""


IMAGE_SIDE = 28


NUM_CLASSES = 10
