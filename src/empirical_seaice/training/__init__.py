"""Minimisation: the trainer, the deferred-Adam optimiser, the books of training and run-time helpers."""
