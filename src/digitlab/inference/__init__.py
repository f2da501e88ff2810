"""Using trained models: loading every kind of model file, predicting, ensembles, TTA, ONNX export."""
