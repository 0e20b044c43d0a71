"""Experiments built on `training/`: each module is one documented command (see docs/)."""
