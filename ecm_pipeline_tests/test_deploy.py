"""The production deployment (Dockerfile, .dockerignore, deploy/): the instance config Dagster really
loads, Postgres included against a real PostgreSQL; the ECS launcher and the S3 compute logs built
without touching the network; the Helm values held to the same
limits; and the image's command run outside Docker until the code server
serves the code location through deploy/workspace.yaml."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import dagster as dg
import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "deploy"
VENV_BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# --- the Dockerfile, read as Docker reads it ----------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per build stage; continuation lines joined, comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for raw in (PROJECT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), " ".join(args.split())))
    return stages


def args_of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    return dict(pair.split("=", 1) for args in args_of(stage, "ENV") for pair in shlex.split(args))


def image_command() -> list[str]:
    [cmd] = args_of(dockerfile_stages()[-1], "CMD")
    return json.loads(cmd)


def healthcheck_command() -> list[str]:
    [check] = args_of(dockerfile_stages()[-1], "HEALTHCHECK")
    return json.loads(check.split(" CMD ", 1)[1])


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_image_installs_the_dependencies_before_the_code_and_the_code_as_a_wheel() -> None:
    wheel, image = dockerfile_stages()
    assert [args_of(stage, "FROM")[0].split()[0] for stage in (wheel, image)] == ["python:3.11-slim-bookworm"] * 2
    # sql/ and expectations/ go into the wheel as the packages ecm_pipeline.sql and
    # ecm_pipeline.expectations, so a non-editable install carries them.
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"ecm_pipeline.sql": "sql", "ecm_pipeline.expectations": "expectations"}
    assert {"ecm_pipeline.sql", "ecm_pipeline.expectations"} <= set(setuptools["packages"])
    assert {"COPY sql ./sql", "COPY expectations ./expectations", "COPY ecm_pipeline ./ecm_pipeline"} <= {
        f"COPY {args}" for args in args_of(wheel, "COPY")}
    assert any(args.startswith("pip wheel --no-deps") for args in args_of(wheel, "RUN"))

    # The final stage: pyproject.toml alone, the dependencies from it, then the wheel without them.
    steps = [f"{kw} {args}" for kw, args in image]
    copy_pyproject = steps.index("COPY pyproject.toml /tmp/pyproject.toml")
    [install_deps] = [i for i, s in enumerate(steps) if "pip install -r /tmp/requirements.txt" in s]
    [install_project] = [i for i, s in enumerate(steps) if "pip install --no-deps /dist/*.whl" in s]
    assert copy_pyproject < install_deps < install_project
    assert not [s for s in steps[:install_deps] if s.startswith("COPY") and "ecm_pipeline" in s]

    # The layer's own one-liner, run on the real pyproject.toml, lists exactly its dependencies.
    words = shlex.split(steps[install_deps].removeprefix("RUN "))
    program = words[words.index("-c") + 1].replace("/tmp/pyproject.toml", str(PROJECT / "pyproject.toml"))
    listed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    assert [line for line in listed if line] == PYPROJECT["project"]["dependencies"]


def test_the_image_runs_the_code_server_as_a_non_root_user() -> None:
    image = dockerfile_stages()[-1]
    [user] = args_of(image, "USER")
    assert user not in {"root", "0"}
    assert [kw for kw, _ in image].index("USER") < [kw for kw, _ in image].index("CMD")
    env = image_env(image)
    assert env["PYTHONUNBUFFERED"] == "1"
    # Where the Helm chart mounts its instance config (global.dagsterHome's default).
    assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"

    # Only tini in front: it forwards signals and reaps, and passes on whatever command a launcher
    # sets (`dagster api execute_run ...`), which replaces CMD.
    [entrypoint] = args_of(image, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["tini", "-g", "--"]
    command = image_command()
    assert command[:3] == ["dagster", "api", "grpc"]
    assert option(command, "-m") == PYPROJECT["tool"]["dagster"]["module_name"]
    assert option(command, "--location-name") == PYPROJECT["tool"]["dagster"]["code_location_name"]
    assert option(command, "-h") == "0.0.0.0"
    port = option(command, "-p")
    assert args_of(image, "EXPOSE") == [port]
    assert healthcheck_command() == ["dagster", "api", "grpc-health-check", "-p", port]

    # The files the image bakes in exist, and the build context keeps local state and caches out
    # without leaving out anything the Dockerfile copies.
    [dagster_yaml] = [args.split("=", 1)[1] for args in args_of(image, "ARG") if args.startswith("DAGSTER_YAML=")]
    assert (PROJECT / dagster_yaml).is_file()
    sources = {word.replace("${DAGSTER_YAML}", dagster_yaml)
               for stage in dockerfile_stages() for args in args_of(stage, "COPY")
               for word in args.split()[:-1] if not word.startswith("--")}
    assert {"pyproject.toml", "README.md", "ecm_pipeline", "sql", "expectations", "deploy/workspace.yaml",
            dagster_yaml} <= sources
    ignored = [line.strip() for line in (PROJECT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".venv", ".ecm", "**/__pycache__", ".ruff_cache", ".pytest_cache", ".git"} <= set(ignored)
    assert not [(source, pattern) for source in sources for pattern in ignored
                if fnmatch(source, pattern) or fnmatch(source.split("/")[0], pattern)]


# --- the production instance: deploy/dagster.yaml against a real PostgreSQL ---------------------------


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A PostgreSQL of this module's own with an empty database, and the DAGSTER_PG_* variables
    pointing at it for the module's tests. (conftest's session `pg` first generates and loads the
    demo warehouse, 16 s, which these tests do not use.)"""
    import pgserver
    import psycopg2
    import sqlalchemy as sa

    server = pgserver.get_server(str(tmp_path_factory.mktemp("pgdata")), cleanup_mode="stop")
    try:
        socket_dir = sa.engine.make_url(server.get_uri()).query["host"]
        conn = psycopg2.connect(dbname="postgres", user="postgres", host=socket_dir)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE ecm_dagster")
        conn.close()
        # libpq takes the unix socket directory from PGHOST when the host is empty (a path cannot
        # be the host of a URL); in production DAGSTER_PG_HOST is the server's name.
        variables = {"DAGSTER_PG_HOST": "", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "postgres",
                     "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "ecm_dagster", "PGHOST": socket_dir}
        with pytest.MonkeyPatch.context() as env:
            for name, value in variables.items():
                env.setenv(name, value)
            yield
    finally:
        server.cleanup()


def write_home(home: Path, config: dict | str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return home


def test_the_production_instance_is_postgres_with_the_run_queue_and_its_limits(postgres: None, tmp_path: Path) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    # The file exactly as shipped, its credentials from the environment.
    home = write_home(tmp_path / "dagster_home", (DEPLOY / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, dg.DefaultRunLauncher)   # the platform variants add theirs

        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue.max_concurrent_runs == 4
        assert queue.tag_concurrency_limits == [{"key": "ecm/job", "value": "triage", "limit": 1},
                                                {"key": "dagster/backfill", "limit": 1}]
        assert concurrency.pool_config.default_pool_limit == 1

        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_monitoring_max_runtime_seconds == 7200
        assert not instance.run_retries_enabled
        assert not instance.telemetry_enabled

        # It records and reads runs in Postgres.
        run = dg.DagsterRun(job_name="ecm_triage", run_id=str(uuid.uuid4()), tags={"ecm/job": "triage"})
        instance.add_run(run)
        [stored] = instance.get_runs(filters=dg.RunsFilter(tags={"ecm/job": "triage"}))
        assert stored.run_id == run.run_id


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list:
    """Fake AWS credentials and region, no AWS config from the machine, and every TCP connection
    refused: building a launcher or a log manager must not call AWS. The attempts are returned."""
    for name, value in {"AWS_DEFAULT_REGION": "me-central-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_CONFIG_FILE": str(tmp_path / "none"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    attempts: list = []
    real_connect = socket.socket.connect

    def refuse(self: socket.socket, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"test: no network ({address})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_the_ecs_variant_is_the_base_plus_an_ecs_launcher_built_offline(
        postgres: None, tmp_path: Path, offline_aws: list) -> None:
    from dagster_aws.ecs import EcsRunLauncher

    base, ecs = load_yaml(DEPLOY / "dagster.yaml"), load_yaml(DEPLOY / "ecs" / "dagster.yaml")
    assert {key: value for key, value in ecs.items() if key != "run_launcher"} == base

    home = write_home(tmp_path / "dagster_home", (DEPLOY / "ecs" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, EcsRunLauncher)
        assert launcher.include_sidecars and launcher.use_current_ecs_task_config
        assert launcher.secrets_tags == ["ecm-pipeline"]
        assert launcher.run_resources == {"cpu": "1024", "memory": "4096"}
        assert launcher.propagate_tags == {"allow_list": ["ecm/job", "dagster/partition", "dagster/schedule_name"]}
        # ECS could resume a run whose task died; the instance says never.
        assert launcher.supports_resume_run and instance.run_monitoring_max_resume_run_attempts == 0
    assert offline_aws == []


def test_the_s3_compute_log_variant_is_built_from_the_environment_offline(
        postgres: None, tmp_path: Path, offline_aws: list, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_BUCKET", "ecm-dagster-logs")
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_PREFIX", "production")
    # Appended to the base file, as deploy/compute-logs-s3.yaml says.
    config = (DEPLOY / "dagster.yaml").read_text() + "\n" + (DEPLOY / "compute-logs-s3.yaml").read_text()
    with dg.DagsterInstance.from_config(str(write_home(tmp_path / "dagster_home", config))) as instance:
        manager = instance.compute_log_manager
        assert isinstance(manager, S3ComputeLogManager)
        assert (manager._s3_bucket, manager._s3_prefix) == ("ecm-dagster-logs", "production")
    assert offline_aws == []


# --- the Helm values against the base instance config -------------------------------------------------


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_the_helm_values_hold_what_deploy_dagster_yaml_holds() -> None:
    base, values = load_yaml(DEPLOY / "dagster.yaml"), load_yaml(DEPLOY / "helm" / "values.yaml")
    runs, pools = base["concurrency"]["runs"], base["concurrency"]["pools"]
    assert values["concurrency"] == {
        "enabled": True,
        "runs": {"maxConcurrentRuns": runs["max_concurrent_runs"],
                 "tagConcurrencyLimits": runs["tag_concurrency_limits"]},
        "pools": {"defaultLimit": pools["default_limit"]}}
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runCoordinator"] == {"enabled": True, "type": "QueuedRunCoordinator"}
    assert daemon["runMonitoring"] == {camel(key): value for key, value in base["run_monitoring"].items()}
    assert daemon["runRetries"] == {"enabled": False} == {"enabled": base["run_retries"]["enabled"]}
    assert values["telemetry"] == base["telemetry"] == {"enabled": False}
    assert values["postgresql"]["postgresqlScheme"] == base["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["enabled"] is False   # external Postgres, password from a Secret

    [deployment] = values["dagster-user-deployments"]["deployments"]
    command = image_command()
    assert deployment["dagsterApiGrpcArgs"] == ["-m", option(command, "-m")]
    assert str(deployment["port"]) == option(command, "-p")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    # The run pods get the SPEC §2 secrets, through the code location and from the launcher.
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["envSecrets"] == values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]


# --- the Helm values against the chart's own schema ----------------------------------------------------

CHART = Path(__file__).parent / "helm_chart"   # vendored; where it comes from: helm_chart/PROVENANCE.md


def helm_coalesce(defaults: object, values: object) -> object:
    """Helm's merge of a values file over the chart's defaults: maps key by key, anything else
    replaced, `null` deletes the key."""
    if not (isinstance(defaults, dict) and isinstance(values, dict)):
        return values
    merged = dict(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = helm_coalesce(defaults.get(key), value)
    return merged


def remote_refs(node: object) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) and not node["$ref"].startswith("#") else set()
        return own.union(*(remote_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(remote_refs(value) for value in node))
    return set()


def chart_schema_errors(values: dict) -> list[str]:
    """What `helm install` would refuse in these values, offline: the Kubernetes definitions the
    schema points to (on raw.githubusercontent.com) stand in as `{}`."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    schema = json.loads((CHART / "values.schema.json").read_text())
    documents: dict[str, dict] = {}
    for ref in remote_refs(schema):
        base, _, pointer = ref.partition("#")
        node = documents.setdefault(base, {})
        for part in pointer.strip("/").split("/"):
            node = node.setdefault(part.replace("~1", "/").replace("~0", "~"), {})

    def offline(uri: str) -> Resource:
        raise LookupError(f"offline: {uri} is not fetched")

    registry = Registry(retrieve=offline).with_resources(
        (base, Resource.from_contents(document, default_specification=DRAFT202012))
        for base, document in documents.items())
    merged = helm_coalesce(load_yaml(CHART / "chart-default-values.yaml"), values)
    validator = Draft202012Validator(schema, registry=registry)
    return sorted(f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
                  for error in validator.iter_errors(merged))


def test_the_helm_values_validate_against_the_charts_schema() -> None:
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    assert chart_schema_errors(values) == []
    # ... and the check can fail: what a typo in our values would look like to `helm install`.
    broken = helm_coalesce(values, {"runLauncher": {"type": "K8sRunLaunchr"},
                                    "concurrency": {"runs": {"maxConcurrentRun": 1}},
                                    "dagster-user-deployments": {"deployments": [{"name": "ecm"}]}})
    errors = chart_schema_errors(broken)
    assert any(e.startswith("runLauncher.type: 'K8sRunLaunchr' is not one of") for e in errors), errors
    assert any(e.startswith("concurrency.runs: Additional properties") for e in errors), errors
    assert any(e.startswith("dagster-user-deployments.deployments.0: 'image' is a required property")
               for e in errors), errors


# --- the image's command, outside Docker --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def code_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """The image's CMD on a free loopback port, with the image's environment and empty homes.
    Autouse, so it starts before this module's first test and loads the definitions (about 10 s)
    while the others run; the last test waits for it."""
    root = tmp_path_factory.mktemp("image")
    workdir, log = root / "app", root / "code-server.log"
    workdir.mkdir()
    port = free_port()
    argv = image_command()
    argv = [str(VENV_BIN / argv[0]), *argv[1:]]
    argv[argv.index("-h") + 1] = "127.0.0.1"
    argv[argv.index("-p") + 1] = str(port)
    from_image = {k: v for k, v in image_env(dockerfile_stages()[-1]).items() if k not in {"PATH", "VIRTUAL_ENV"}}
    env = {**os.environ, **from_image, "DAGSTER_HOME": str(root / "dagster_home"), "ECM_HOME": str(root / "ecm")}
    (root / "dagster_home").mkdir()
    with open(log, "wb") as out:
        # Its own process group, ended as a whole.
        # SIGINT back to its default. Dagster's server handles SIGTERM with Python's SIGINT handler,
        # and Python installs none when it starts with SIGINT ignored — which a child inherits from a
        # background shell job or a test process that ignores SIGINT — so SIGTERM would be ignored
        # too (seen in full parallel runs). Under tini in the container SIGINT is never ignored.
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        yield process, port, log
    finally:   # normally the last test has stopped it already
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
                process.wait(grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def test_the_image_command_serves_the_code_location_to_deploy_workspace_yaml(
        code_server: tuple[subprocess.Popen, int, Path], tmp_path: Path) -> None:
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    process, port, log = code_server
    # deploy/workspace.yaml as the webserver and the daemon read it, pointed at this server.
    workspace = load_yaml(DEPLOY / "workspace.yaml")
    [entry] = workspace["load_from"]
    assert entry["grpc_server"]["port"] == int(option(image_command(), "-p"))
    entry["grpc_server"].update(host="127.0.0.1", port=port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    [origin] = location_origins_from_yaml_paths([str(tmp_path / "workspace.yaml")])
    assert origin.location_name == PYPROJECT["tool"]["dagster"]["code_location_name"]

    client = origin.create_client()
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, f"the code server exited:\n{log.read_text()[-3000:]}"
        try:
            answer = client.list_repositories()
            break
        except Exception:
            assert time.monotonic() < deadline, f"no answer in 90 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
    # The definitions loaded (a load error would come back instead of the list).
    assert '"ListRepositoriesResponse"' in answer and '"ecm_pipeline.definitions"' in answer, answer[:2000]

    # The image's HEALTHCHECK, as Docker would run it.
    check = healthcheck_command()
    done = subprocess.run([str(VENV_BIN / check[0]), *check[1:-1], str(port)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

    # A pod or task stop is a SIGTERM: the server ends cleanly, well within Kubernetes' 30 s grace.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the code server was still running 30 s after SIGTERM:\n{log.read_text()[-3000:]}")
    assert code == 0, log.read_text()[-3000:]
