"""Next Day Wildfire Spread (Huot et al. 2022): its TFRecords read without TensorFlow."""
