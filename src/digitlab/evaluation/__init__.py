"""How well a model reads labelled digits: metrics, calibration, figures and the HTML report."""
