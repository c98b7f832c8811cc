"""outputs: what a finished run leaves and how any folder of it is read back.

Its records (`results`: metrics.json's schema), the best model and the predictions (`save`),
report.md with its plots (`reports`, `render`), the model card (`card`), one way to open any
folder a command wrote, with the run behind it and its model (`trained`), and the Hydra
callbacks that check the run's folder before it is written (`callbacks`). It imports the
packages below it (config, tasks, data, models, trainers) and nothing above.
"""
