"""Trainers: `hf` (transformers' Trainer) and `manual` (a plain PyTorch loop), one contract.

Both take the same model, datasets, collator, optimizer and scheduler, evaluate every epoch,
keep the best weights by the chosen metric, and report a `TrainResult`.
"""
