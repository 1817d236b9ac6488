"""WildfireSpreadTS (Gerard et al. 2023) read as published: layouts, folds, preprocessing, cache."""
