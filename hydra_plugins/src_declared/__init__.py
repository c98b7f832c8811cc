"""No plugin class: Hydra imports every module under hydra_plugins when it loads its plugins,
before it composes a config, so importing this stores the declarations' defaults
(src/config/declared.py) in its ConfigStore for every entry point and the compose API alike, as
Hydra's own plugins store their configs."""

from src.config.declared import register

register()
