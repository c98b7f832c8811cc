"""config: what a run is told and keeps, the ground every other package stands on.

The declarations every component writes its config with (`schema`: a dataclass per component,
each key's type, default, range and help), the knobs people sweep (`knobs`), composing a config
outside a Hydra run (`compose`) with each class's defaults as Hydra nodes (`declared`), the
whole config checked before anything loads (`validation`), the command line's typos
(`preflight`) and its parsing (`cli`), the devices a run may ask for (`devices`), the run
folder's bookkeeping (`rundir`: file names, whole-file writes, the lock, status.json) and the
mistakes a user makes (`errors`: one line, one exit code, through `reported`). It imports the
standard library, Hydra and OmegaConf: nothing of the other packages, which all import it.
"""
