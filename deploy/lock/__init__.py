"""The lock side: requirement files and their layers, the joint solve, lock files, verify, audit,
and the stdlib-only readers (reqfile, lockfile, specifiers, markers) that onboarding shares.

It reads and writes files in the project and runs pip-compile and pip-audit; it never imports the
deploy side (release building, hosts, SSH), so `nox -s verify` loads none of that.
"""
