"""Images to MNIST-style digits: opening any image, finding the ink, cutting out each digit."""
