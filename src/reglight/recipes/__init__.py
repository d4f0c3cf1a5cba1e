"""Ready recipes: a LightningModule and a LightningDataModule per task, run from a YAML config.

Each recipe is a module or a folder here (`tiny`, `lasso/`, `medical_cnn/`) with its YAML in the
repository's `recipes/` folder; `reglight run NAME` builds both classes from that YAML through LightningCLI.
A recipe's ablation study is data in the same YAML (an `ablation:` section) that the command-line layer
([reglight.ablation][reglight.ablation]) runs. Recipes use the whole library but never the command-line
layer.
"""
