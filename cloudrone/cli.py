"""``cloudrone_cli``: a mission bundle in, a running fleet out.

A thin layer: every command calls functions that scripts and tests call too
(cloudrone.mission, cloudrone.fleet, cloudrone.runner).
"""

from __future__ import annotations

import difflib
import filecmp
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from cloudrone.fleet import image as drone_image
from cloudrone.fleet import sim
from cloudrone.flight.ground import fly
from cloudrone.mission import deploy, flightkey
from cloudrone.mission import pack as packing
from cloudrone.mission import status as drone_status
from cloudrone.mission.model import (
    MAVLINK_BRIDGE_PORT,
    Mission,
    MissionError,
    load,
    missing_secrets,
)
from cloudrone.mission.picture import FORMATS, draw
from cloudrone.mission.plan import built_archive, fleet_spec, placement, render_inventory
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


@contextmanager
def _fleet_errors() -> Iterator[None]:
    """A fleet that cannot be made or read ends the command with its message (exit 1)."""
    try:
        yield
    except (sim.FleetError, packing.PackError) as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None


def _ensure_key(path: Path) -> bool:
    """Make the simulated fleet's key pair unless it is there; True when made now."""
    if path.exists():
        return False
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
    return True


def _secrets_or_exit(mission: Mission) -> None:
    """Every secret the mission needs is there (vault or environment), or exit 2 naming each."""
    missing = missing_secrets(mission)
    problem = flightkey.problem(mission)
    if problem:
        missing.append(problem)
    if missing:
        err.print("[bold red]A secret the mission needs is not there; nothing was changed:[/]")
        for line in missing:
            err.print(f"  {escape(line)}")
        raise typer.Exit(2)


def _warn_unsigned(mission: Mission) -> None:
    if not mission.flight.signing:
        err.print(
            f"[bold yellow]{mission.bundle / 'mission.yml'} flight.signing: false: the drones "
            "take unsigned control, so anyone who sends from a ground station's address can "
            "fly them. Remove it to fly signed.[/]"
        )


@mission_app.command("validate")
def validate(bundle: BundleArg = None) -> None:
    """Check a mission bundle and say what is wrong, changing nothing."""
    mission = _load(bundle)
    _secrets_or_exit(mission)
    _warn_unsigned(mission)
    console.print(
        f"{mission.bundle / 'mission.yml'}: mission {mission.name}, "
        f"{len(mission.drones)} drone(s), target {mission.target}: valid"
    )


class Progress:
    """The live display of a run: one row per drone, its stage, its task, its counts."""

    def __init__(self, mission: Mission) -> None:
        self.rows = {
            d.name: {"stage": "waiting", "task": "", "ok": 0, "changed": 0, "failed": 0}
            for d in mission.drones
        }

    def event(self, host: str, result: str, play: str, task: str) -> None:
        row = self.rows.get(host)
        if row is None:
            return
        row["stage"] = play.split(" | ")[0] if play else row["stage"]
        row["task"] = task.split(" | ", 1)[-1]
        if result in ("ok", "changed"):
            row["ok"] += 1
            row["changed"] += result == "changed"
        elif result in ("failed", "unreachable"):
            row["failed"] += 1

    def recap(self, stats: dict[str, dict[str, int]]) -> None:
        for name, row in self.rows.items():
            s = stats.get(name, {})
            row.update(ok=s.get("ok", 0), changed=s.get("changed", 0),
                       failed=s.get("failures", 0) + s.get("dark", 0))  # fmt: skip
            row["stage"] = "done" if not row["failed"] else "stopped"
            row["task"] = (
                "unreachable" if s.get("dark") else ("" if not row["failed"] else row["task"])
            )

    def table(self) -> Table:
        table = Table(box=None, pad_edge=False)
        for col in ("drone", "stage", "ok", "changed", "failed", "task"):
            table.add_column(col, justify="right" if col in ("ok", "changed", "failed") else "left")
        for name, r in self.rows.items():
            failed = f"[red]{r['failed']}[/]" if r["failed"] else "0"
            table.add_row(name, r["stage"], str(r["ok"]), str(r["changed"]), failed,
                          f"[dim]{escape(r['task'][:60])}[/]")  # fmt: skip
        return table


def _sim_fleet_up(mission: Mission) -> str:
    """Create or start the simulated drones; returns the drone image (phones use it too)."""
    console.print("[bold blue]==>[/] Simulated drones")
    try:
        made = _ensure_key(mission.ssh_key)
        image = drone_image.ensure(log=console.print)
        fleet = sim.SimFleet(fleet_spec(mission), log=console.print)
        public_key = mission.ssh_key.with_suffix(".pub").read_text()
        fleet.up(image, public_key)
        if made:
            # drones made before the key was (a new home, a deleted key) know only the old one
            fleet.authorize_key(public_key)
        return image
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


@mission_app.command("up")
def up(
    bundle: BundleArg = None,
    check: Annotated[
        bool, typer.Option("--check", help="Say what would change; change nothing.")
    ] = False,
    tags: Annotated[str | None, typer.Option(help="Only these roles, e.g. base.")] = None,
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A pack (mission pack): its bundle, images, Python bundles and Debian "
            "packages; nothing is fetched from anywhere.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Bring a mission up: drones (simulated ones are created), provision.yml, services,
    and a phone on each access point that must reach every service by name."""
    started = time.monotonic()
    unpacked = None
    if from_ is not None:
        if bundle is not None:
            err.print(
                "[red]give a bundle or --from ARCHIVE, not both (the pack holds its bundle)[/]"
            )
            raise typer.Exit(2)
        console.print(f"[bold blue]==>[/] Mission pack {from_}")
        try:
            unpacked = packing.unpack(from_, console.print)
        except packing.PackError as exc:
            err.print(f"[red]{escape(str(exc))}; nothing was changed[/]")
            raise typer.Exit(2) from None
        bundle = unpacked.bundle
    mission = _load(bundle)
    _secrets_or_exit(mission)
    _warn_unsigned(mission)
    console.print(
        f"[bold]Mission {mission.name}[/]: {mission.description or ''} "
        f"({len(mission.drones)} drones, {len(mission.services)} service(s), "
        f"target {mission.target})"
    )
    image = None
    if mission.target == "sim" and check:
        # check mode changes nothing, and creating or starting a drone is a change
        states = _fleet_states(mission)
        missing = [name for name, state in states.items() if state != "running"]
        if missing:
            err.print(
                f"[red]--check needs the simulated drones running; {', '.join(missing)} "
                "would be created or started: run mission up without --check first[/]"
            )
            raise typer.Exit(2)
    elif mission.target == "sim":
        image = _sim_fleet_up(mission)
    elif not mission.ssh_key.exists():
        err.print(
            f"[red]{mission.bundle / 'mission.yml'} ssh_key: {mission.ssh_key} does not "
            "exist; make one (ssh-keygen -t ed25519) or point ssh_key at yours[/]"
        )
        raise typer.Exit(2)
    offline = None
    if unpacked is not None:
        with _fleet_errors():
            offline = _offline(mission, unpacked)
    _build_images(mission)
    state = mission_state_dir(mission.name)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = flightkey.ensure(mission)
    if key is not None and key.origin == "made":
        console.print(
            "    made the mission's flight key: the drones take signed control alone "
            f"(cloudrone_cli mission ground-station {mission.bundle} tells a ground station)"
        )
    inventory = state / "inventory.yml"
    inventory.write_text(render_inventory(mission, offline))
    console.print(
        f"[bold blue]==>[/] provision.yml on {len(mission.drones)} drones (inventory {inventory})"
    )
    progress = Progress(mission)
    with Live(progress.table(), console=console, refresh_per_second=4, transient=False) as live:

        def on_event(host: str, result: str, play: str, task: str) -> None:
            progress.event(host, result, play, task)
            live.update(progress.table())

        result = run_playbook(
            "provision.yml", inventory, state, check=check, tags=tags, on_event=on_event
        )
        # the last word is Ansible's own recap
        progress.recap(result.stats)
        live.update(progress.table())
    log = result.log or state / "runner" / "artifacts"
    if not result.ok:
        for failure in result.failures:
            err.print(f"[red]  {escape(failure)}[/]")
        err.print(
            f"[red]provision.yml failed (rc={result.rc}). Fix what the lines above say and run "
            f"mission up again: it finishes what this run started. Full log: {log}[/]"
        )
        raise typer.Exit(1)
    verb = "would change" if check else "changed"
    fetches: list[deploy.Fetch] = []
    if image is not None and not tags and mission.services:
        console.print("[bold blue]==>[/] A phone on each access point asks for every service")
        with _fleet_errors():
            phones = deploy.ensure_phones(mission, image, console.print)
            fetches = deploy.prove_services(mission, phones, console.print)
        for f in fetches:
            console.print(("  [green]ok[/] " if f.ok else "  [red]NO[/] ") + escape(f.line()))
    _print_summary(mission, drone_status.collect(mission))
    failed = [f for f in fetches if not f.ok]
    if failed:
        err.print(
            f"[red]{len(failed)} fetch(es) from phones failed. Look at the service "
            f"(mission status {mission.bundle}), its drone's firewall and the mesh routes, "
            "then run mission up again[/]"
        )
        raise typer.Exit(1)
    console.print(
        f"[bold green]Fleet ready[/]: {result.changed} task(s) {verb} in "
        f"{time.monotonic() - started:.0f} s (Ansible {result.elapsed:.0f} s; log {log})"
    )
    if result.changed == 0 and not check:
        console.print("Nothing to change: every drone is as the bundle says.")
    _print_access(mission)


def _build_images(mission: Mission) -> None:
    """The images the bundle builds here, each saved where every drone loads it from."""
    if any(s.build for s in mission.services):
        console.print("[bold blue]==>[/] Service images built here")
        with _fleet_errors():
            deploy.build_images(mission, log=console.print)


def _offline(mission: Mission, unpacked: packing.Unpacked) -> dict[str, str]:
    """Images from the pack, its offline package cache started; the inventory's settings."""
    for service in mission.services:
        archive = unpacked.image(service.name)
        if service.build and archive is not None:
            target = built_archive(mission, service)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or not filecmp.cmp(archive, target, shallow=False):
                shutil.copyfile(archive, target)
    packing.start_offline_cache(unpacked, console.print)
    if mission.target == "sim":
        address = str(mission.controller_address)
    else:
        address = packing.controller_address_towards(mission.drones[0].management_address)
    return {
        "apt_proxy": f"http://{address}:{packing.OFFLINE_PORT}",
        "wheelhouse": str(unpacked.wheelhouse),
    }


@mission_app.command("pack")
def pack(
    bundle: BundleArg = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="The archive. Default: NAME-pack.tar here."),
    ] = None,
    suite: Annotated[
        str, typer.Option(help="The drones' Debian release (bookworm: Raspberry Pi OS 12).")
    ] = "bookworm",
    machine: Annotated[
        list[str] | None,
        typer.Option(
            help="A drone machine to pack for: x86_64, aarch64 (Pi 3 to 5), armv7l (Pi 2); "
            "again for more. Default: this machine for sim, the drones' models for ssh.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """One archive with everything a base camp without Internet needs for the mission."""
    started = time.monotonic()
    mission = _load(bundle)
    out = output or Path(f"{mission.name}-pack.tar")
    with _fleet_errors():
        targets = (
            packing.parse_targets(suite, machine)
            if machine
            else packing.default_targets(mission, suite)
        )
    console.print(
        f"[bold]Mission {mission.name}[/]: packing for {', '.join(str(t) for t in targets)}"
    )
    _build_images(mission)
    console.print("[bold blue]==>[/] What the drones install")
    with _fleet_errors():
        manifest = packing.pack(mission, out, targets, log=console.print)
    files = manifest["files"]
    size = sum(f["size"] for f in files.values())
    console.print(
        f"[bold green]Packed[/] {out}: {len(files)} files, {size / 1e6:.0f} MB, in "
        f"{time.monotonic() - started:.0f} s. At the base camp: "
        f"cloudrone_cli mission up --from {out}"
    )


@mission_app.command("plan")
def plan(
    bundle: BundleArg = None,
    diff: Annotated[
        bool, typer.Option("--diff", help="Also show how each file would change.")
    ] = False,
) -> None:
    """What up would do, changing nothing: where each service's replicas go, and
    (on a fleet that is up) every task that would change, by Ansible's check mode."""
    mission = _load(bundle)
    table = Table(title=f"Mission {mission.name}: services", title_justify="left")
    for col in ("service", "image", "placement", "replicas", "on", "name phones use"):
        table.add_column(col)
    planned = placement(mission)
    for s in mission.services:
        counts = planned[s.name]
        where = ", ".join(f"{d} ×{n}" if n > 1 else d for d, n in counts.items()) or "-"
        image = s.image or f"built here ({s.build[0] if s.build else '?'})"
        ports = ", ".join(str(p.published) for p in s.ports)
        table.add_row(
            s.name,
            image,
            s.placement,
            str(s.replicas),
            where,
            f"{s.dns}.{mission.access_point.domain}" + (f" :{ports}" if ports else ""),
        )
    console.print(table if mission.services else "No services in this mission.")
    if mission.target == "sim":
        absent = [name for name, state in _fleet_states(mission).items() if state != "running"]
        if absent:
            console.print(
                f"{', '.join(absent)} would be created or started; every stage of "
                "provision.yml would run on them (nothing to compare yet)"
            )
            return
    state = mission_state_dir(mission.name)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    flightkey.ensure(mission)
    inventory = state / "inventory-plan.yml"
    inventory.write_text(render_inventory(mission))
    if any(s.build for s in mission.services):
        deploy.build_images(mission, log=lambda _m: None)
    with console.status("Ansible check mode"):
        result = run_playbook("provision.yml", inventory, state, check=True, diff=diff)
    if not result.ok:
        for failure in result.failures:
            err.print(f"[red]  {escape(failure)}[/]")
        raise typer.Exit(1)
    if not result.changes:
        console.print("Nothing would change: every drone is as the bundle says.")
        return
    console.print(f"{len(result.changes)} task(s) would change:")
    for host, task, diffs in result.changes:
        console.print(f"  {host}: {escape(task)}")
        for d in diffs if diff else []:
            before, after = d.get("before"), d.get("after")
            if isinstance(before, str) and isinstance(after, str):
                lines = difflib.unified_diff(
                    before.splitlines(), after.splitlines(),
                    d.get("before_header", "before"), d.get("after_header", "after"), lineterm="",
                )  # fmt: skip
                console.print(escape("\n".join(f"    {line}" for line in lines)))
    console.print(f"Full log: {result.log}")


@mission_app.command("ground-station")
def ground_station(bundle: BundleArg = None) -> None:
    """What a ground station needs to fly the mission's drones: their addresses, and
    where the mission's signing key is (the key itself is never printed)."""
    mission = _load(bundle)
    _warn_unsigned(mission)
    key = flightkey.ensure(mission) if mission.flight.signing else None
    address, port = mission.ground_station
    table = Table(title=f"Mission {mission.name}: flight", title_justify="left")
    for col in ("drone", "system id", "MAVLink (the bridge)", "speaks first to"):
        table.add_column(col)
    for d in mission.drones:
        table.add_row(d.name, str(d.system_id), f"{d.management_address}:{MAVLINK_BRIDGE_PORT}",
                      f"{address}:{port}")  # fmt: skip
    console.print(table)
    console.print(
        f"The ground station listens on UDP {port} at {address}, on the management link "
        "(the drones take MAVLink on no other interface)."
    )
    if key is None:
        return
    listen = f"udpin:0.0.0.0:{port}"
    console.print(
        f"Signing key: [bold]{key.passphrase_file}[/] holds the passphrase, "
        f"[bold]{key.key_file}[/] the 32-byte key it stands for (SHA-256 of the passphrase), "
        "as 64 hex digits. Both are readable by you alone; keep them so.\n"
        f"  cloudrone_cli fly:  cloudrone_cli fly --listen 0.0.0.0:{port} --key-file "
        f"{key.key_file}\n"
        f'  MAVProxy:           echo "{listen} $(cat {key.passphrase_file})" >> '
        f"~/.mavproxy/signing.keys; mavproxy.py --master={listen}\n"
        "                      (or, in MAVProxy: signing key PASSPHRASE)\n"
        "  MAVSDK (no signing of its own): through MAVProxy, which signs what it forwards:\n"
        f"                      mavproxy.py --master={listen} --out=udp:127.0.0.1:14540 "
        "--source-system=245 --source-component=190 (MAVSDK's own ids: MAVProxy signs by "
        "packing again under its ids), then MAVSDK on udpin://127.0.0.1:14540\n"
        "  pymavlink:          conn.setup_signing(bytes.fromhex(open(KEY_FILE).read()), "
        "sign_outgoing=True)\n"
        "  Other ground stations: give the passphrase where they ask for a signing key if "
        "they hash it with SHA-256 as MAVProxy does, else the hex key.\n"
        "The drones' and the ground station's clocks must agree within a minute: a signed "
        "frame whose time runs further ahead is refused."
    )


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
            f"| take it down: cloudrone_cli mission down --purge {mission.bundle}"
        )


def _status_table(mission: Mission, reports: list, states: dict[str, str]) -> Table:
    view = drone_status.swarm_view(reports)
    table = Table(title=f"Mission {mission.name}", title_justify="left")
    for col in ("drone", "mesh: hears (* relay) · routes", "swarm", "services", "phones",
                "flight bridge", "battery"):  # fmt: skip
        table.add_column(col)
    names = mission.names_by_mesh_address
    for drone, report in zip(mission.drones, reports, strict=True):
        state = states.get(drone.name, "running")
        if not report.ssh:
            where = "[red]no answer[/]" + (f" (container {state})" if state != "running" else "")
            table.add_row(drone.name, where, "-", "-", "-", "-", "-")
            continue
        routes = (report.mesh or {}).get("routes")
        mesh = escape(drone_status.describe_mesh(report.mesh, names))
        table.add_row(
            drone.name,
            mesh + ("" if routes is None else f" · {len(routes)}"),
            drone_status.describe_swarm(report, view["leader"]),
            ", ".join(s.removeprefix(f"{mission.name}_") for s in report.running) or "-",
            "-" if report.phones is None else str(report.phones),
            drone_status.describe_flight(report.flight),
            drone_status.describe_battery(report.flight),
        )
    return table


def _print_summary(mission: Mission, reports: list) -> None:
    states = _fleet_states(mission) if mission.target == "sim" else {}
    console.print(_status_table(mission, reports, states))
    view = drone_status.swarm_view(reports)
    for name, s in sorted(view["services"].items()):
        where = ", ".join(s["drones"]) or "nowhere"
        colour = "green" if s["running"] == s["desired"] else "red"
        console.print(
            f"  service {name}: [{colour}]{s['running']}/{s['desired']}[/] running on {where}"
        )


def _fleet_states(mission: Mission) -> dict[str, str]:
    """Each simulated drone's container state (running, exited, absent...)."""
    with _fleet_errors():
        return {d["drone"]: d["state"] for d in sim.SimFleet(fleet_spec(mission)).describe()}


@mission_app.command("status")
def status(
    bundle: BundleArg = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout, for scripts.")
    ] = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", help="Ask again every this many seconds, until Ctrl-C."),
    ] = None,
    picture: Annotated[
        Path | None,
        typer.Option(
            "--picture",
            help="Also draw the mesh (who hears whom, relays, services) to a .png or .svg file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """What each drone is doing: mesh, swarm, services, access point, flight bridge, battery.

    Exit code 1 when a drone does not answer."""
    mission = _load(bundle)
    if picture is not None and picture.suffix not in FORMATS:
        err.print(f"[red]--picture {escape(str(picture))}: give a .png or .svg file name[/]")
        raise typer.Exit(2)
    if as_json or picture is not None:
        reports = drone_status.collect(mission)
        out = drone_status.as_json(mission, reports)
        if mission.target == "sim":
            states = _fleet_states(mission)
            for d in out["drones"]:
                d["container"] = states.get(d["name"])
        if picture is not None:
            try:
                draw(out, picture)
            except OSError as exc:
                err.print(f"[red]--picture {escape(str(picture))}: {escape(str(exc))}[/]")
                raise typer.Exit(2) from None
            if not as_json:
                console.print(f"the mesh, drawn: {picture}")
        if as_json:
            print(json.dumps(out, indent=2))
            raise typer.Exit(0 if all(r.ssh for r in reports) else 1)
    if watch:
        with Live(console=console, refresh_per_second=1) as live:
            while True:
                reports = drone_status.collect(mission)
                states = _fleet_states(mission) if mission.target == "sim" else {}
                live.update(_status_table(mission, reports, states))
                time.sleep(max(watch, 1.0))
    reports = drone_status.collect(mission)
    _print_summary(mission, reports)
    if not all(r.ssh for r in reports):
        raise typer.Exit(1)


@mission_app.command("down")
def down_(
    bundle: BundleArg = None,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="Also leave the swarm; a simulated fleet is destroyed (containers, links).",
        ),
    ] = False,
) -> None:
    """Remove the mission's services from the swarm; with --purge, the fleet too."""
    mission = _load(bundle)
    if purge and packing.stop_offline_cache(mission.name):
        console.print("    the offline package cache stopped")
    if purge and mission.target == "sim":
        with _fleet_errors():
            removed = sim.down(mission.name, log=console.print)
        console.print(f"Mission {mission.name}: removed {removed} object(s)")
        return
    reports = drone_status.collect(mission)
    managers = [r for r in reports if r.ssh and (r.swarm or {}).get("ControlAvailable")]
    if not managers:
        err.print(
            f"[red]no manager of {mission.name}'s swarm answers; nothing was removed. "
            "Bring the fleet up (mission up) or check the management network[/]"
        )
        raise typer.Exit(1)
    manager = mission.drone(managers[0].name)
    code, out, errors = drone_status.run_on(
        mission, manager, f"sudo -n docker stack rm {mission.name}"
    )
    if code != 0:
        err.print(
            f"[red]{manager.name}: docker stack rm failed: {escape((out + errors).strip())}[/]"
        )
        raise typer.Exit(1)
    console.print(f"Mission {mission.name}: services removed (by {manager.name})")
    if purge:
        for r in reports:
            if r.ssh:
                drone = mission.drone(r.name)
                drone_status.run_on(mission, drone, "sudo -n docker swarm leave --force")
                console.print(f"    {drone.name} left the swarm")


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
