"""Invoke tasks for this repository: the same deploy tasks any adopting project gets."""

from deploy.tasks import namespace

ns = namespace
