"""compose.yaml, checked statically (no Docker engine here): it parses, every command and
healthcheck resolves to a real entry point with valid options, every variable it sets or reads is
a real setting, nothing secret is written in it, and it has what a real deployment needs."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pydantic import BaseModel

from config import Settings
from config.settings import AppProfile, StorageProfile
from worker.cli import cli

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")
SECRETISH = re.compile(r"secret|password|passwd|token|access_key|_key\b", re.IGNORECASE)
# Variables compose interpolates that are not cloudrec settings, and who reads them.
OTHER_VARIABLES = {
    "FLOWER_USER": "FLOWER_BASIC_AUTH",
    "FLOWER_PASSWORD": "FLOWER_BASIC_AUTH",
    "REDIS_PASSWORD": "redis requirepass, and every CLOUDREC_REDIS_URL",
    "REDIS_MAXMEMORY": "redis --maxmemory",
}
# The sentinel profile (Redis through Sentinel): data nodes, sentinels, and the cloudrec
# services that reach Redis through the sentinels, with the plain service each one varies.
DATA_NODES = ("redis-1", "redis-2")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
SENTINEL_CLIENTS = {
    "sentinel-worker": "worker",
    "sentinel-beat": "beat",
    "sentinel-metrics": "metrics",
}
REDIS_NODE_ENVIRONMENT = {
    "REDIS_PASSWORD", "REDISCLI_AUTH", "REDIS_MAXMEMORY", "REDIS_NODE", "REDIS_REPLICAOF",
}  # fmt: skip
# Environment variables a service gets that are not cloudrec settings, by service.
OTHER_ENVIRONMENT = {
    "redis": {"REDIS_PASSWORD", "REDISCLI_AUTH", "REDIS_MAXMEMORY"},
    "flower": {"FLOWER_BASIC_AUTH"},
    **{node: REDIS_NODE_ENVIRONMENT for node in DATA_NODES},
    **{sentinel: {"REDIS_PASSWORD"} for sentinel in SENTINELS},
}
SCHEMA = Path(__file__).with_name("compose-schema.json")
PLAIN_SERVICES = ("emulator", "worker", "beat", "metrics", "flower", "ncs", "web")
CLOUDREC_SERVICES = (*PLAIN_SERVICES, *SENTINEL_CLIENTS)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def image_entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "the Dockerfile has an exec-form ENTRYPOINT"
    return list(yaml.safe_load(match.group(1)))


def argv_of(service: dict[str, Any]) -> list[str]:
    """What the container runs: entrypoint + command, as compose combines them."""
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        entrypoint = image_entrypoint() if "build" in service else []
    command = service.get("command") or []
    return [*entrypoint, *command]


def interpolated(value: str) -> str:
    """The value with ``${VAR:-default}`` resolved to its default (or a placeholder)."""
    value = INTERPOLATION.sub(lambda m: m["arg"] if m["op"] in (":-", "-") else "x", value)
    return value.replace("$$", "$")


def resolve_cloudrec(argv: list[str]) -> click.Command:
    """Parse ``cloudrec ARGV`` as the CLI would (options, types, choices), without running it.

    Groups take no options of their own, so only the leaf command parses; except a group that
    runs by itself (``cloudrec ncs --port P``), which is then the leaf."""
    ctx = click.Context(cli, info_name="cloudrec")
    command: click.Command = cli
    args = list(argv)
    while isinstance(command, click.Group) and not (
        command.invoke_without_command and (not args or args[0].startswith("-"))
    ):
        name, sub, args = command.resolve_command(ctx, args)
        assert sub is not None and name is not None, f"no cloudrec command in {argv!r}"
        ctx = click.Context(sub, info_name=name, parent=ctx)
        command = sub
    leaf = command.make_context(ctx.info_name, args, parent=ctx.parent)
    assert not leaf.args, f"cloudrec {argv!r}: left over {leaf.args!r}"
    return command


def resolve_celery(argv: list[str]) -> None:
    """``celery -A worker.celery_app SUB ...``: the app imports and SUB is a celery command."""
    from celery.bin.celery import celery as celery_cli

    assert argv[1] == "-A", argv
    module = importlib.import_module(argv[2])
    assert hasattr(module, "app")
    sub = argv[3]
    plugins = {e.name for e in importlib.metadata.entry_points(group="celery.commands")}
    assert sub in celery_cli.commands or sub in plugins, f"celery has no command {sub!r}"


def resolve(argv: list[str]) -> None:
    program = argv[0]
    if program == "cloudrec":
        resolve_cloudrec([interpolated(a) for a in argv[1:]])
    elif program == "celery":
        resolve_celery([interpolated(a) for a in argv])
    elif program == "python":
        assert argv[1] == "-c"
        compile(argv[2], "<healthcheck>", "exec")
    elif program in ("redis-server", "redis-cli"):
        pass  # the redis image's own programs
    elif program == "sh":
        assert argv[1] == "-c" and "exec redis-server" in argv[2], argv  # redis with its config
    else:
        raise AssertionError(f"unknown program {program!r} in {argv!r}")


def healthcheck_argv(test: list[str]) -> list[str]:
    kind, *rest = test
    if kind == "CMD":
        return rest
    assert kind == "CMD-SHELL", test
    return shlex.split(rest[0].replace("$$HOSTNAME", "worker-1"))


def setting_exists(name: str) -> bool:
    """``CLOUDREC_X``, ``CLOUDREC_STORAGE__<PROFILE>__<FIELD>`` or
    ``CLOUDREC_APPS__<APP>__<FIELD>`` names a field of Settings."""
    assert name.startswith("CLOUDREC_"), name
    parts = name.removeprefix("CLOUDREC_").lower().split("__")
    if parts[0] not in Settings.model_fields:
        return False
    if parts[0] == "storage":
        return len(parts) == 3 and parts[2] in StorageProfile.model_fields
    if parts[0] == "apps":
        return len(parts) == 3 and parts[2] in AppProfile.model_fields
    return len(parts) == 1 or _nested(Settings.model_fields[parts[0]].annotation, parts[1:])


def _nested(annotation: Any, parts: list[str]) -> bool:
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and (parts[0] in annotation.model_fields)
    )


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


# -- the tests ------------------------------------------------------------------------------
def test_every_service_runs_a_real_entry_point(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"redis", *CLOUDREC_SERVICES, *DATA_NODES, *SENTINELS}
    assert image_entrypoint() == ["cloudrec"]
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("cloudrec") == "worker.cli:main"
    commands = {name: argv_of(service) for name, service in services.items()}
    for argv in commands.values():
        resolve(argv)
    assert commands["worker"][:2] == ["cloudrec", "worker"]
    assert commands["beat"][:2] == ["cloudrec", "beat"]
    assert commands["metrics"][:2] == ["cloudrec", "metrics"]
    assert commands["emulator"][:2] == ["cloudrec", "emulator"]
    assert commands["ncs"][:2] == ["cloudrec", "ncs"]
    assert commands["web"][:2] == ["cloudrec", "web"]
    assert commands["flower"][:4] == ["celery", "-A", "worker.celery_app", "flower"]


def test_a_bad_command_would_be_caught() -> None:
    # The resolver is strict: unknown commands, options and choices fail.
    for argv in (["cloudrec", "wrker"], ["cloudrec", "worker", "--pool", "gevent"]):
        with pytest.raises((click.UsageError, AssertionError)):
            resolve(argv)
    with pytest.raises(AssertionError):
        resolve(["celery", "-A", "worker.celery_app", "flowr"])


def test_every_service_has_a_healthcheck_that_resolves_and_a_restart_policy(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), name
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        resolve(healthcheck_argv(check["test"]))
    assert healthcheck_argv(services["beat"]["healthcheck"]["test"]) == [
        "cloudrec",
        "health",
        "--beat",
    ]


def test_redis_persists_every_write_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    for name in ("redis", *DATA_NODES):
        command = " ".join(argv_of(services[name]))
        assert "--appendonly yes" in command, name
        assert "--maxmemory-policy noeviction" in command, name
        assert '--maxmemory "$$REDIS_MAXMEMORY"' in command, name  # else: grows until killed
        # the password is in a file, not on a command line
        assert "--requirepass" not in command and "--masterauth" not in command, name
        assert any(v.endswith(":/data") for v in services[name]["volumes"]), name
        env = environment_of(services[name])
        assert (
            env["REDIS_PASSWORD"]
            == env["REDISCLI_AUTH"]
            == "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
        ), name


def test_settings_come_from_an_env_file_and_wait_for_redis(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in CLOUDREC_SERVICES:
        service = services[name]
        files = service.get("env_file")
        assert files and any(f.get("path") == ".env" for f in files), name
        if name in SENTINEL_CLIENTS:  # the sentinels, and the replica a submit waits for
            waits_for = service["depends_on"]
            assert set(waits_for) == {*SENTINELS, "redis-2"}, name
            assert all(w["condition"] == "service_healthy" for w in waits_for.values()), name
        elif name != "emulator":  # the emulator does not use Redis
            assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["beat"]["deploy"]["replicas"] == 2  # one active, one standby


def test_every_variable_set_or_read_is_a_real_setting(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = COMPOSE.read_text()
    for match in INTERPOLATION.finditer(text):
        name = match["name"]
        assert name in OTHER_VARIABLES or setting_exists(name), name
    for name, service in services.items():
        for key, raw in environment_of(service).items():
            if key in OTHER_ENVIRONMENT.get(name, ()):
                continue
            assert setting_exists(key), f"{name}: {key} is not a setting"
            monkeypatch.setenv(key, interpolated(raw))
    Settings()  # and their values parse
    documented = re.findall(r"^#?\s*(CLOUDREC_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert documented, ".env.example names the settings"
    for key in documented:
        assert setting_exists(key), f".env.example: {key} is not a setting"
    assert not setting_exists("CLOUDREC_NO_SUCH_THING")
    assert not setting_exists("CLOUDREC_STORAGE__DEFAULT__PASSWORD")
    assert not setting_exists("CLOUDREC_APPS__SCHOOL__PASSWORD")


def test_no_secret_is_written_in_the_deployment(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, raw in environment_of(service).items():
            if SECRETISH.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", raw), f"{name}: {key}={raw}"
        for arg in argv_of(service):
            if SECRETISH.search(arg) or "basic-auth" in arg:
                for match in INTERPOLATION.finditer(arg):
                    if SECRETISH.search(match["name"]):
                        assert match["op"] in (":?", "?", None), f"{name}: default for {arg}"
                assert "=" not in INTERPOLATION.sub("", arg).split("=", 1)[-1], arg
    dockerfile = DOCKERFILE.read_text()
    assert not re.search(r"^(ENV|ARG)\b.*(SECRET|PASSWORD|TOKEN|KEY)", dockerfile, re.M | re.I)
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, _, value = line.partition("=")
        if not line.startswith("#") and SECRETISH.search(key):
            assert value == "", f".env.example ships a value for {key}"


def test_every_cloudrec_service_reaches_redis_with_its_password(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in PLAIN_SERVICES:
        url = environment_of(services[name])["CLOUDREC_REDIS_URL"]
        assert url == "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379/0", name
        assert "CLOUDREC_REDIS_SENTINELS" not in environment_of(services[name]), name
    for name in SENTINEL_CLIENTS:  # the URL gives the password and db; the sentinels the host
        url = environment_of(services[name])["CLOUDREC_REDIS_URL"]
        assert url == "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis-1:6379/0", name


def test_flower_takes_its_password_from_the_environment(
    services: dict[str, dict[str, Any]],
) -> None:
    flower = services["flower"]
    assert not any("auth" in arg for arg in argv_of(flower))  # docker inspect shows the argv
    auth = environment_of(flower)["FLOWER_BASIC_AUTH"]
    assert auth == "${FLOWER_USER:-admin}:${FLOWER_PASSWORD:?set FLOWER_PASSWORD in .env}"
    # That Flower enforces FLOWER_BASIC_AUTH: tests/ops/test_flower.py, a real Flower process.


def test_no_public_default_for_the_customer_secret_or_the_vault_key(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in CLOUDREC_SERVICES:
        env = environment_of(services[name])
        for key in ("CLOUDREC_CUSTOMER_SECRET", "CLOUDREC_VAULT_KEY"):
            assert env[key] == f"${{{key}:?set {key} in .env}}", (name, key)
    example = ENV_EXAMPLE.read_text()
    for key in ("CLOUDREC_CUSTOMER_SECRET", "CLOUDREC_VAULT_KEY", "REDIS_PASSWORD"):
        assert re.search(rf"^{key}=$", example, re.MULTILINE), f".env.example: set {key}"


def pinned(image: str) -> bool:
    """By digest, or by an exact version tag (x.y.z, optionally with a variant: 3.11.10-slim)."""
    by_digest = re.fullmatch(r"[a-z0-9./:-]+@sha256:[0-9a-f]{64}", image)
    return bool(by_digest or re.fullmatch(r"[a-z0-9./-]+:\d+\.\d+\.\d+(-[a-z0-9.-]+)?", image))


def test_images_are_pinned_to_an_exact_version(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert pinned(service["image"]), (name, service["image"])
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert bases and all(pinned(b) for b in bases), bases
    for floating in ("redis:7.4", "redis", "python:3.11-slim", "cloudrec:latest"):
        assert not pinned(floating), floating


def test_compose_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    import json

    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # A misspelled key anywhere fails it.
    for path, wrong in (
        (("services", "worker"), "enviroment"),
        (("services", "redis", "healthcheck"), "intervall"),
        ((), "volume"),
        (("services", "beat", "deploy"), "replica"),
    ):
        broken = json.loads(json.dumps(compose))
        node = broken
        for key in path:
            node = node[key]
        node[wrong] = "x"
        assert not validator.is_valid(broken), (path, wrong)
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["restart"] = "unless-stoped"
    assert not validator.is_valid(broken)


def test_the_redis_command_runs_with_a_password_and_bounded_memory(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """compose's Redis command, run for real (this machine's redis-server): it refuses clients
    without the password, bounds memory, and keeps the password off its command line."""
    import os
    import subprocess
    import time

    import redis as redis_lib

    from tests.support.ports import free_port

    password, port = "composeRedisPass123", free_port()
    script = services["redis"]["command"][2].replace("$$", "$")
    script = script.replace("/tmp/auth.conf", str(tmp_path / "auth.conf"))
    script += f" --port {port} --bind 127.0.0.1 --dir {tmp_path} --save ''"
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": password, "REDIS_MAXMEMORY": "64mb"}
    server = subprocess.Popen(["sh", "-c", script], env=env, cwd=tmp_path)
    try:
        client = redis_lib.Redis(port=port, password=password, socket_timeout=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis_lib.ConnectionError:
                assert time.monotonic() < deadline, "compose's redis command did not start"
                time.sleep(0.1)
        with pytest.raises(redis_lib.AuthenticationError):
            redis_lib.Redis(port=port, socket_timeout=2).set("k", "v")
        assert client.config_get("maxmemory")["maxmemory"] == str(64 * 1024 * 1024)
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert b"redis-server" in cmdline and password.encode() not in cmdline
        check = services["redis"]["healthcheck"]["test"][1:]  # redis-cli ping, REDISCLI_AUTH
        ping = subprocess.run(
            [*check[:1], "-p", str(port), *check[1:]],
            env={**env, "REDISCLI_AUTH": password},
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert ping.stdout.strip() == "PONG", ping
    finally:
        server.terminate()
        server.wait(10)


# -- the sentinel profile -------------------------------------------------------------------
MONITOR = re.compile(
    r"'sentinel monitor (?P<name>\S+) (?P<host>\S+) (?P<port>\d+) (?P<quorum>\d+)'"
)


def sentinel_config(service: dict[str, Any]) -> str:
    """The sentinel's generated config, as its command writes it (the printf'd lines)."""
    script = service["command"][2]
    assert "exec redis-server /data/sentinel.conf --sentinel" in script
    return script


def test_the_sentinel_profile_is_one_consistent_group(services: dict[str, dict[str, Any]]) -> None:
    """Everything of the profile is in it (and nothing else is); the clients name exactly the
    sentinel services, the master name the sentinels monitor, and run what the plain services
    run; the replica follows the master; every node keeps its state on a volume of its own."""
    profile = {n for n, s in services.items() if "sentinel" in (s.get("profiles") or [])}
    assert profile == {*DATA_NODES, *SENTINELS, *SENTINEL_CLIENTS}
    master, replica = (environment_of(services[n]) for n in DATA_NODES)
    assert master["REDIS_NODE"] == "redis-1" and master["REDIS_REPLICAOF"] == ""
    assert replica["REDIS_NODE"] == "redis-2" and replica["REDIS_REPLICAOF"] == "redis-1 6379"
    monitors = []
    for name in SENTINELS:
        config = sentinel_config(services[name])
        assert "'port 26379'" in config, name
        assert services[name]["healthcheck"]["test"] == ["CMD", "redis-cli", "-p", "26379", "ping"]
        assert "sentinel auth-pass cloudrec" in config  # it logs in to the nodes
        assert "REDISCLI_AUTH" not in environment_of(services[name])  # sentinels take none
        match = MONITOR.search(config)
        assert match, name
        monitors.append(match.groupdict())
    assert all(m == monitors[0] for m in monitors)
    monitor = monitors[0]
    assert (monitor["host"], monitor["port"]) == ("redis-1", "6379")
    assert len(SENTINELS) // 2 < int(monitor["quorum"]) <= len(SENTINELS)
    for name, plain in SENTINEL_CLIENTS.items():
        env = environment_of(services[name])
        assert env["CLOUDREC_REDIS_MASTER"] == monitor["name"], name
        assert env["CLOUDREC_REDIS_SENTINELS"] == ",".join(f"{s}:26379" for s in SENTINELS)
        assert argv_of(services[name]) == argv_of(services[plain]), name
        assert services[name]["healthcheck"] == services[plain]["healthcheck"], name
        assert {k: v for k, v in env.items() if "REDIS" not in k} == {
            k: v for k, v in environment_of(services[plain]).items() if "REDIS" not in k
        }, name
        settings = Settings(
            **{k.removeprefix("CLOUDREC_").lower(): interpolated(v) for k, v in env.items()}
        )
        assert settings.redis_master == "cloudrec" and settings.wait_replicas == 1, name
    volumes = [v.split(":")[0] for n in (*DATA_NODES, *SENTINELS) for v in services[n]["volumes"]]
    assert len(set(volumes)) == len(volumes) == 5, volumes


def _spawn(script: str, env: dict[str, str], cwd: Path) -> Any:
    import os
    import subprocess

    return subprocess.Popen(
        ["sh", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for(probe: Any, what: str, timeout: float = 30.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except Exception:  # a node or sentinel still starting
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_sentinel_profile_runs_and_survives_a_failover(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The profile's own commands, run for real on loopback (the service names become
    127.0.0.1 and free ports; /data a directory per node): the sentinels log in to the nodes and
    see the replica, a cloudrec client reaches the master through them and a submit's WAIT is
    acknowledged; after a failover the sentinels persist what they did, and the old master
    restarted with its kept config comes back as a replica, not as a second master."""
    import redis as redis_lib

    from tests.support.ports import free_port
    from worker.redis_conn import confirm_replicated, redis_client

    password = "composeSentinelPass123"
    ports = {name: free_port() for name in (*DATA_NODES, *SENTINELS)}
    dirs = {name: tmp_path / name for name in ports}
    for directory in dirs.values():
        directory.mkdir()
    started: dict[str, Any] = {}

    def start(name: str) -> None:
        script = services[name]["command"][2].replace("$$", "$").replace("/data/", f"{dirs[name]}/")
        env = {"REDIS_PASSWORD": password}
        if name in DATA_NODES:
            compose_env = environment_of(services[name])
            follows = compose_env["REDIS_REPLICAOF"].replace(
                "redis-1 6379", f"127.0.0.1 {ports['redis-1']}"
            )
            env |= {
                "REDIS_MAXMEMORY": "64mb",
                "REDIS_NODE": "127.0.0.1",
                "REDIS_REPLICAOF": follows,
            }
            script += " --save ''"
        else:
            script = script.replace("redis-1 6379", f"127.0.0.1 {ports['redis-1']}")
        script += f" --port {ports[name]} --bind 127.0.0.1 --dir {dirs[name]}"
        started[name] = _spawn(script, env, dirs[name])

    def node(name: str) -> redis_lib.Redis:
        return redis_lib.Redis(port=ports[name], password=password, socket_timeout=2)

    def sentinel(name: str) -> redis_lib.Redis:
        return redis_lib.Redis(port=ports[name], socket_timeout=2)

    def replicas_seen(name: str) -> int:
        return int(sentinel(name).sentinel_master("cloudrec")["num-slaves"])

    def role(name: str) -> str:
        return str(node(name).info("replication")["role"])

    try:
        for name in (*DATA_NODES, *SENTINELS):
            start(name)
        _wait_for(
            lambda: node("redis-2").info("replication")["master_link_status"] == "up", "the replica"
        )
        # Each sentinel logged in (auth-pass): it read the master's INFO and found the replica.
        for name in SENTINELS:
            _wait_for(lambda n=name: replicas_seen(n) == 1, name)
            cmdline = Path(f"/proc/{started[name].pid}/cmdline").read_bytes()
            assert password.encode() not in cmdline
        env = environment_of(services["sentinel-worker"])
        settings = Settings(
            redis_url=f"redis://:{password}@redis-1:6379/0",
            redis_sentinels=",".join(f"127.0.0.1:{ports[s]}" for s in SENTINELS),
            redis_master=env["CLOUDREC_REDIS_MASTER"],
        )
        client = redis_client(settings, socket_timeout=2)
        client.set("cloudrec:job:probe", "1")
        confirm_replicated(client, ["cloudrec:job:probe"], settings.wait_replicas, 2.0)
        assert node("redis-2").get("cloudrec:job:probe") == b"1"

        _wait_for(lambda: sentinel("sentinel-1").sentinel_failover("cloudrec"), "a failover")
        _wait_for(lambda: role("redis-2") == "master" and role("redis-1") == "slave", "promotion")
        client.set("cloudrec:job:after", "2")  # through the sentinels, to the new master
        assert node("redis-2").get("cloudrec:job:after") == b"2"
        new_master = f"127.0.0.1 {ports['redis-2']}"
        _wait_for(lambda: new_master in (dirs["redis-1"] / "redis.conf").read_text(), "rewrite")
        _wait_for(
            lambda: (
                f"sentinel monitor cloudrec {new_master}"
                in (dirs["sentinel-1"] / "sentinel.conf").read_text()
            ),
            "the sentinel's rewrite",
        )
        started["redis-1"].kill()
        started["redis-1"].wait(10)
        start("redis-1")  # its kept config: a replica of redis-2, not a master again
        _wait_for(lambda: role("redis-1") == "slave", "the old master back")
        _wait_for(lambda: node("redis-1").get("cloudrec:job:after") == b"2", "the resync")
        client.close()
    finally:
        for proc in started.values():
            proc.kill()
            proc.wait(10)


# -- the recordings page --------------------------------------------------------------------
def test_the_web_page_listens_beyond_loopback_with_a_password_from_the_env_file(
    services: dict[str, dict[str, Any]],
) -> None:
    web = services["web"]
    argv = argv_of(web)
    assert argv[argv.index("--host") + 1] == "0.0.0.0"  # reachable from the network, not only lo
    env = environment_of(web)
    assert env["CLOUDREC_WEB_PASSWORD"] == (
        "${CLOUDREC_WEB_PASSWORD:?set CLOUDREC_WEB_PASSWORD in .env}"
    )  # required, no default: `cloudrec web` would refuse 0.0.0.0 without it anyway
    assert not any("password" in arg.lower() for arg in argv)  # not on its command line
    assert re.search(r"^CLOUDREC_WEB_PASSWORD=$", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert any(v == "recordings:/recordings:ro" for v in web["volumes"])
    assert argv[argv.index("--storage-dir") + 1] == "/recordings"


def test_the_web_command_and_its_healthcheck_run(
    services: dict[str, dict[str, Any]], redis_url: str, tmp_path: Path
) -> None:
    """compose's ``cloudrec web`` command, run for real (on loopback and a free port here):
    without the password it refuses to start on compose's 0.0.0.0; with it, the healthcheck
    (logged in with the container's own variables) passes, and fails with a wrong password."""
    import subprocess
    import sys

    from tests.support.ports import free_port
    from tests.support.processes import cloudrec_env, processes, run_cli, spawn, wait_http

    web = services["web"]
    argv = argv_of(web)[1:]  # after the image's entry point, cloudrec
    env = cloudrec_env(redis_url, "http://127.0.0.1:9", CLOUDREC_WEB_USER="cloudrec")
    refused = run_cli(argv, env, timeout=60)
    assert refused.returncode != 0 and "CLOUDREC_WEB_PASSWORD" in refused.stderr, refused

    port = str(free_port())
    local = [a for a in argv]
    local[local.index("--host") + 1] = "127.0.0.1"
    local[local.index("--port") + 1] = port
    local[local.index("--storage-dir") + 1] = str(tmp_path)
    env["CLOUDREC_WEB_PASSWORD"] = "composeWebPass123"
    check = healthcheck_argv(web["healthcheck"]["test"])
    assert check[:2] == ["python", "-c"] and "8720" in check[2]
    script = check[2].replace("8720", port)

    def healthcheck(password: str) -> int:
        run_env = {**env, "CLOUDREC_WEB_PASSWORD": password}
        done = subprocess.run([sys.executable, "-c", script], env=run_env, capture_output=True)
        return done.returncode

    with processes() as procs:
        procs.append(spawn("web", local, env, tmp_path))
        wait_http(f"http://127.0.0.1:{port}/", auth=("cloudrec", "composeWebPass123"))
        assert healthcheck("composeWebPass123") == 0
        assert healthcheck("wrong") != 0
