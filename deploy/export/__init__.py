"""Hand-offs to other engines: what pinship writes so that an existing tool (Ansible) installs a
release it built, with the same checks and the same result on each host as `invoke deploy`.

`ansible` writes the inventory and the playbook; `onhost` is the host side the playbook runs (stdlib
only, any Python 3.8+, carrying the agent). release/export.py builds the release and calls them.
"""
