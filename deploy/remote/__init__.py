"""Reaching a host, and nothing about releases: the Target base and this machine (target), SSH
(ssh), connections kept between runs (kept: the run's client; keeper: the process; wire: their
messages), the one place that picks among them (connect), the agent payload (bundle), host-key
trust (trust) and the shape every host reply must have (replies)."""
