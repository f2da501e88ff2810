"""Reading digits in images with a model: one image, or folders of files in batches."""
