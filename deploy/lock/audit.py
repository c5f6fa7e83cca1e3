"""`nox -s audit`: pip-audit over the deploy layer's lock, in hash mode, without pip resolving.

pip-audit exits 1 both when it finds vulnerabilities and when it cannot run; a CI job must tell
"fix your dependencies" from "the audit is broken", so its JSON is read and the exit codes split.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from deploy.config import Config
from deploy.errors import DeployError
from deploy.lock.layers import load as load_layers
from deploy.lock.reqfile import clip, display
from deploy.lock.verify import deploy_layer

FOUND = 1
COULD_NOT_RUN = 2


@dataclass
class Finding:
    name: str
    version: str
    vuln: str
    fixed_in: list[str]


def audit(config: Config, *, osv_url: str | None = None) -> list[Finding]:
    """Findings for the deploy layer; raise DeployError when the audit itself could not run."""
    graph = load_layers(config.root, config.requirements, config.inputs_outside)
    layer = deploy_layer(config, graph)
    if layer is None or not graph.layers[layer].lock.is_file():
        raise DeployError("there is no deploy layer lock to audit", fix="run: nox -s lock")
    lock = graph.layers[layer].lock
    command = [sys.executable, "-m", "pip_audit", "-r", str(lock), "--require-hashes", "--disable-pip",
               "-f", "json", "--progress-spinner", "off"]
    command += ["-s", "osv", "--osv-url", osv_url] if osv_url else ["-s", "pypi"]
    proc = subprocess.run(command, capture_output=True, text=True, check=False, cwd=config.root)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeployError(f"pip-audit could not audit {display(lock, config.root)}: {clip(detail)}",
                          fix="check the network to the vulnerability service, then run: nox -s audit") from None
    return [
        Finding(dep["name"], dep["version"], vuln["id"], list(vuln.get("fix_versions", [])))
        for dep in report.get("dependencies", [])
        for vuln in dep.get("vulns", [])
    ]


def render(findings: list[Finding]) -> str:
    if not findings:
        return "audit: no known vulnerabilities in the deploy layer"
    lines = [f"audit: {len(findings)} known vulnerabilit{'y' if len(findings) == 1 else 'ies'}:"]
    for f in findings:
        fix = f"fixed in {', '.join(f.fixed_in)}; run: nox -s upgrade -- {f.name}" if f.fixed_in else "no fix yet"
        lines.append(clip(f"  {f.name} {f.version}: {f.vuln} ({fix})", 400))
    return "\n".join(lines)


def run_audit(config: Config, osv_url: str | None) -> int:
    """The audit as an entry point runs it: findings printed, and the exit code CI reads
    (0: none found, FOUND, or COULD_NOT_RUN with the reason on stderr)."""
    try:
        findings = audit(config, osv_url=osv_url)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return COULD_NOT_RUN
    print(render(findings))
    return FOUND if findings else 0
