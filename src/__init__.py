"""Config-driven fine-tuning of BERT-family text classifiers (see README.md)."""
