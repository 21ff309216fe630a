"""Evaluations of a data set's models and of the shipped bundle, and the model card written from them."""
