"""``cloudrone_cli``: a mission bundle in, a running fleet out.

A thin layer: every command calls functions that scripts and tests call too
(cloudrone.mission, cloudrone.fleet, cloudrone.runner).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cloudrone.fleet import image as drone_image
from cloudrone.fleet import sim
from cloudrone.flight.ground import fly
from cloudrone.mission import status as drone_status
from cloudrone.mission.model import Mission, MissionError, load
from cloudrone.mission.plan import fleet_spec, render_inventory
from cloudrone.paths import ProjectNotFound, mission_state_dir, project_root
from cloudrone.runner import run_playbook

app = typer.Typer(
    help="Cloudrone: micro clouds in the sky. Turn a mission bundle into a running fleet.",
    no_args_is_help=True,
    add_completion=False,
    # errors are messages, never tracebacks (main() below says what to do)
    pretty_exceptions_enable=False,
)
mission_app = typer.Typer(help="Bring a mission's fleet up, look at it, take it down.")
app.add_typer(mission_app, name="mission")
app.command("fly", help="Fly a drone: joystick (or keyboard) to MAVLink, its telemetry on screen.")(
    fly
)

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

BundleArg = Annotated[
    Path | None,
    typer.Argument(
        help="Mission bundle folder (holds mission.yml). Default: the demo mission.",
        show_default=False,
    ),
]


def _load(bundle: Path | None) -> Mission:
    try:
        folder = bundle if bundle is not None else project_root() / "missions" / "demo"
        return load(folder)
    except MissionError as exc:
        err.print(
            f"[bold red]The mission bundle has {len(exc.problems)} problem(s); "
            "nothing was changed:[/]"
        )
        for problem in exc.problems:
            err.print(f"  {escape(problem)}")
        raise typer.Exit(2) from None
    except ProjectNotFound as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None


def _ensure_key(path: Path) -> None:
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cloudrone-sim", "-f", str(path)],
            check=True,
        )
    except FileNotFoundError:
        raise sim.FleetError(
            "ssh-keygen not found; install the SSH client (apt-get install openssh-client, "
            "or run scripts/setup.sh)"
        ) from None
    except subprocess.CalledProcessError as exc:
        raise sim.FleetError(
            f"ssh-keygen could not write {path} (exit {exc.returncode}); "
            "point ssh_key in mission.yml at a folder you can write"
        ) from None
    console.print(f"    made the simulated fleet's SSH key {path}")


@mission_app.command("validate")
def validate(bundle: BundleArg = None) -> None:
    """Check a mission bundle and say what is wrong, changing nothing."""
    mission = _load(bundle)
    console.print(
        f"{mission.bundle / 'mission.yml'}: mission {mission.name}, "
        f"{len(mission.drones)} drone(s), target {mission.target}: valid"
    )


@mission_app.command("up")
def up(
    bundle: BundleArg = None,
    check: Annotated[
        bool, typer.Option("--check", help="Say what would change; change nothing.")
    ] = False,
    tags: Annotated[str | None, typer.Option(help="Only these roles, e.g. base.")] = None,
) -> None:
    """Bring a mission's fleet up: drones (simulated ones are created), then provision.yml."""
    started = time.monotonic()
    mission = _load(bundle)
    console.print(
        f"[bold]Mission {mission.name}[/]: {mission.description or ''} "
        f"({len(mission.drones)} drones, target {mission.target})"
    )
    if mission.target == "sim" and check:
        # check mode changes nothing, and creating or starting a drone is a change
        try:
            states = sim.SimFleet(fleet_spec(mission), log=console.print).describe()
        except sim.FleetError as exc:
            err.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
        missing = [d["drone"] for d in states if d["state"] != "running"]
        if missing:
            err.print(
                f"[red]--check needs the simulated drones running; {', '.join(missing)} "
                "would be created or started: run mission up without --check first[/]"
            )
            raise typer.Exit(2)
    elif mission.target == "sim":
        console.print("[bold blue]==>[/] Simulated drones")
        try:
            _ensure_key(mission.ssh_key)
            image = drone_image.ensure(log=console.print)
            fleet = sim.SimFleet(fleet_spec(mission), log=console.print)
            fleet.up(image, mission.ssh_key.with_suffix(".pub").read_text())
        except sim.FleetError as exc:
            err.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
        except (RuntimeError, ValueError, subprocess.CalledProcessError) as exc:
            err.print(
                f"[red]building the simulated drone's image failed: {escape(str(exc))}; "
                "read the output above, check that the package cache answers "
                "(scripts/setup.sh starts it), and see images/drone/ for the recipe[/]"
            )
            raise typer.Exit(1) from None
    elif not mission.ssh_key.exists():
        err.print(
            f"[red]{mission.bundle / 'mission.yml'} ssh_key: {mission.ssh_key} does not "
            "exist; make one (ssh-keygen -t ed25519) or point ssh_key at yours[/]"
        )
        raise typer.Exit(2)

    state = mission_state_dir(mission.name)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    inventory = state / "inventory.yml"
    inventory.write_text(render_inventory(mission))
    console.print(
        f"[bold blue]==>[/] provision.yml on {len(mission.drones)} drones (inventory {inventory})"
    )
    with console.status("starting") as status:
        result = run_playbook(
            "provision.yml",
            inventory,
            state,
            check=check,
            tags=tags,
            on_task=lambda task: status.update(f"[dim]{task}[/]"),
        )
    _print_recap(mission, result.stats)
    if not result.ok:
        for failure in result.failures:
            err.print(f"[red]  {escape(failure)}[/]")
        err.print(
            f"[red]provision.yml failed (rc={result.rc}); full log: "
            f"{state / 'runner' / 'artifacts'}[/]"
        )
        raise typer.Exit(1)
    verb = "would change" if check else "changed"
    console.print(
        f"[bold green]Fleet ready[/]: {result.changed} task(s) {verb} in "
        f"{time.monotonic() - started:.0f} s (Ansible {result.elapsed:.0f} s)"
    )
    _print_access(mission)


def _print_recap(mission: Mission, stats: dict[str, dict[str, int]]) -> None:
    table = Table(title="provision.yml", title_justify="left")
    for col in ("drone", "ok", "changed", "failed", "unreachable"):
        table.add_column(col, justify="left" if col == "drone" else "right")
    for drone in mission.drones:
        s = stats.get(drone.name, {})
        table.add_row(
            drone.name,
            str(s.get("ok", 0)),
            str(s.get("changed", 0)),
            str(s.get("failures", 0)),
            str(s.get("dark", 0)),
        )
    console.print(table)


def _print_access(mission: Mission) -> None:
    table = Table(title="How to reach the drones", title_justify="left")
    for col in ("drone", "management", "mesh", "phones", "ssh"):
        table.add_column(col)
    for d in mission.drones:
        ssh = f"ssh -i {mission.ssh_key} {mission.admin_user}@{d.management_address}"
        table.add_row(d.name, d.management_address, str(d.mesh_address), str(d.ap_subnet), ssh)
    console.print(table)
    if mission.target == "sim":
        console.print(
            f"Containers: docker ps --filter label={sim.LABEL_FLEET}={mission.name}  "
            f"| take it down: cloudrone_cli mission down {mission.bundle}"
        )


@mission_app.command("status")
def status(bundle: BundleArg = None) -> None:
    """What each drone is doing: container (simulated), SSH, mesh, flight bridge, battery."""
    mission = _load(bundle)
    states = {}
    if mission.target == "sim":
        try:
            states = {d["drone"]: d["state"] for d in sim.SimFleet(fleet_spec(mission)).describe()}
        except sim.FleetError as exc:
            err.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1) from None
    table = Table(title=f"Mission {mission.name}", title_justify="left")
    for col in ("drone", "container", "management", "ssh", "mesh neighbours", "flight bridge",
                "battery"):  # fmt: skip
        table.add_column(col)
    names = {str(d.mesh_address): d.name for d in mission.drones}
    silent = 0
    for drone, report in zip(mission.drones, drone_status.collect(mission), strict=True):
        silent += not report.ssh
        table.add_row(
            drone.name,
            states.get(drone.name, "-"),
            drone.management_address,
            "[green]answers[/]" if report.ssh else "[red]no answer[/]",
            escape(drone_status.describe_mesh(report.mesh, names)),
            drone_status.describe_flight(report.flight),
            drone_status.describe_battery(report.flight),
        )
    console.print(table)
    if silent:
        raise typer.Exit(1)


@mission_app.command("down")
def down_(bundle: BundleArg = None) -> None:
    """Take a simulated fleet down (containers, volumes, links). Real drones are left alone."""
    mission = _load(bundle)
    if mission.target != "sim":
        err.print(
            f"[red]{mission.name} flies real drones (target ssh): land and power them off "
            "by hand; mission down only removes simulated fleets[/]"
        )
        raise typer.Exit(2)
    try:
        removed = sim.down(mission.name, log=console.print)
    except sim.FleetError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    console.print(f"Mission {mission.name}: removed {removed} object(s)")


def main() -> None:
    """The command line: every failure ends in a message, never in a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; nothing more was started")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("CLOUDRONE_DEBUG"):
            raise
        err.print(
            f"[red]cloudrone_cli stopped on an error it does not know: "
            f"{type(exc).__name__}: {escape(str(exc))}[/]\n"
            "Run again with CLOUDRONE_DEBUG=1 to see where, and report it with that output."
        )
        sys.exit(1)
