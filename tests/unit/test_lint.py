"""The repository stays clean: Python, YAML, Ansible, as CI would judge it."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.conftest import ROOT, tool


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_lint():
    result = run(tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = run(tool("ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint():
    result = run(tool("yamllint"), "-s", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile():
    result = run(tool("ansible-lint"), "--profile", "production", "--offline")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("inventory", ["inventory/sim.yml", "inventory/drones.example.yml"])
def test_provision_syntax(inventory):
    result = run(tool("ansible-playbook"), "-i", inventory, "--syntax-check", "provision.yml")
    assert result.returncode == 0, result.stdout + result.stderr


ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES)
def test_role_validates_its_arguments(role):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    defaults_file = ROOT / "roles" / role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) or {}
    # every default is declared (so a typo in an override fails before any change)
    assert set(defaults) <= set(options), set(defaults) - set(options)
    # and carries the role's prefix
    assert all(name.startswith(f"{role}_") for name in options), [
        n for n in options if not n.startswith(f"{role}_")
    ]
