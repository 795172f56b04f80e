"""Baseline dictionary learners on the udlbench.training.DictionaryLearner interface."""
