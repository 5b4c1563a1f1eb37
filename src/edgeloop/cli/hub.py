"""``edgeloop hub``: serve the hub's API; migrate its database."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from edgeloop.hub.retrain_config import RetrainConfig
    from edgeloop.hub.store import HubStore
    from edgeloop.security import PrivateKey

app = typer.Typer(help="Run the hub.", no_args_is_help=True)

DB_HELP = (
    "SQLAlchemy URL of the hub store: sqlite:///PATH.db or postgresql+psycopg://USER@HOST:PORT/DB."
)


@app.command("serve")
def serve(
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///edgeloop-hub.db",
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="Also consume node uplinks from the MQTT broker at HOST:PORT "
            "(shared subscription of --group)."
        ),
    ] = None,
    group: Annotated[
        str, typer.Option(help="Shared-subscription group: hub replicas of one hub share it.")
    ] = "hub",
    instance: Annotated[
        str, typer.Option(help="This replica's name in the group (unique per replica).")
    ] = "0",
    tenant: Annotated[
        str | None, typer.Option(help="Consume this tenant's nodes only (default: every tenant).")
    ] = None,
    data_dir: Annotated[
        Path,
        typer.Option(
            help="The hub's data directory: its model-signing key is generated there on the "
            "first start (hub-signing-key.pem) and read on every later one."
        ),
    ] = Path("edgeloop-hub-data"),
    key: Annotated[
        Path | None,
        typer.Option(help="Sign models with this Ed25519 key (PEM) instead of the data dir's."),
    ] = None,
    rollout_tick_s: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Judge the running model rollout this often (timeouts, minimum durations); "
            "measurements from nodes judge it as they arrive too.",
        ),
    ] = 10.0,
    retrain_every_s: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Retrain from the nodes' curated samples this often (0: only by hand or "
            "on drift); each run evaluates, registers and starts a canary, or says why not "
            "(edgeloop models runs).",
        ),
    ] = 0.0,
    drift_period_s: Annotated[
        float,
        typer.Option(
            min=0.001,
            help="Judge drift per period of this length (nodes send a sketch per "
            "models.measure_every_s: give them the same).",
        ),
    ] = 60.0,
    drift_tick_s: Annotated[
        float, typer.Option(min=0.1, help="Judge the drift periods that are due this often.")
    ] = 10.0,
    drift_metric: Annotated[
        str, typer.Option(help="Drift statistic per feature: psi, ks or w1.")
    ] = "psi",
    drift_threshold: Annotated[
        float, typer.Option(help="A feature drifts when its statistic is above this.")
    ] = 0.25,
    drift_min_samples: Annotated[
        int, typer.Option(min=1, help="Windows a feature needs in a period to be judged.")
    ] = 200,
    drift_persistence: Annotated[
        int, typer.Option(min=1, help="Consecutive drifted periods that trigger retraining.")
    ] = 3,
    drift_cooldown: Annotated[
        int, typer.Option(min=0, help="Periods after a trigger without another one.")
    ] = 0,
    drift_trigger_on: Annotated[
        str, typer.Option(help="Trigger on the merged 'fleet' drifting, or on any 'node'.")
    ] = "fleet",
    retrain_config: Annotated[
        Path | None,
        typer.Option(
            help="Retraining settings as JSON: window_s, min_rows, holdout_fraction, "
            "max_holdout_alert_rate, min_true_alarm_recall, min_false_alarm_cleared, policy "
            "(as POST /v1/rollouts takes it), ... (docs/learning-loop.md).",
        ),
    ] = None,
    max_pending: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            help="Uplink messages the broker may send this replica before it acknowledges "
            "them (MQTT receive maximum).",
        ),
    ] = 32,
) -> None:
    """Serve the hub API (ingest, queries, OpenAPI at /docs) until interrupted.

    The database schema is upgraded to this release's revision first. With ``--mqtt``
    the hub also consumes uplinks from the broker, through the same ingest path as
    ``POST /v1/ingest`` (so ``/metrics`` counts both).
    """
    import uvicorn

    from edgeloop.hub.app import create_app

    broker = _broker(mqtt) if mqtt is not None else None
    retraining = _retrain_config(retrain_config) if retrain_config is not None else None
    signing_key = _signing_key(data_dir, key)
    store = _open(db)
    from edgeloop.drift import DriftConfig
    from edgeloop.errors import ConfigError as _ConfigError

    try:
        drift_config = DriftConfig(
            metric=drift_metric,  # type: ignore[arg-type]
            threshold=drift_threshold,
            min_samples=drift_min_samples,
            persistence=drift_persistence,
            cooldown=drift_cooldown,
            trigger_on=drift_trigger_on,  # type: ignore[arg-type]
        )
    except _ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    app = create_app(
        store,
        signing_key=signing_key,
        drift_config=drift_config,
        drift_period_s=drift_period_s,
        retrain_config=retraining,
    )
    consumer = None
    if broker is not None:
        from edgeloop.errors import ConfigError, TransportError
        from edgeloop.hub.mqtt_ingest import MqttIngest

        try:
            consumer = MqttIngest(
                app.state.ingest,
                broker[0],
                broker[1],
                group=group,
                instance=instance,
                tenant=tenant,
                max_pending=max_pending,
            ).start()
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None
        except TransportError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    from edgeloop.hub.rollout_ticker import RolloutTicker

    ticker = RolloutTicker(app.state.control, rollout_tick_s).start()
    from edgeloop.hub.drift_ticker import DriftTicker

    drift_ticker = DriftTicker(app.state.drift, drift_tick_s).start()
    scheduler = None
    if retrain_every_s > 0:
        from edgeloop.hub.retrain import RetrainScheduler

        scheduler = RetrainScheduler(app.state.retrain, retrain_every_s).start()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: end with a clean exit
    # (status 0) instead, so the consumer below disconnects from the broker too.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        ticker.stop()
        drift_ticker.stop()
        if scheduler is not None:
            scheduler.stop()
        app.state.retrain.close()
        if consumer is not None:
            consumer.stop()


@app.command("migrate")
def migrate(
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///edgeloop-hub.db",
) -> None:
    """Upgrade the hub database's schema to this release's revision (creating the tables
    of an empty database; adopting one made before migrations when it matches the
    baseline). `hub serve` does the same on start; this does it explicitly."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from edgeloop.hub import migrate as m

    shown = _shown(db)
    try:
        up = m.upgrade_url(db)
    except (ValueError, ArgumentError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except m.SchemaError as exc:
        typer.echo(f"error: {shown}: {exc}", err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        typer.echo(
            f"error: {shown}: the database failed: {exc.__class__.__name__}: {exc}", err=True
        )
        raise typer.Exit(1) from None
    if up.before == up.after:
        typer.echo(f"{shown}: already at {up.after}")
        return
    how = " (stamped as the baseline: made before migrations)" if up.stamped else ""
    typer.echo(f"{shown}: {up.before or 'none'} -> {up.after}{how}")


def _retrain_config(path: Path) -> RetrainConfig:
    """``--retrain-config``: a JSON object, or a usage error naming the file and field."""
    import json

    from edgeloop.errors import ConfigError
    from edgeloop.hub.retrain_config import retrain_config

    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ConfigError("retrain: expected a JSON object")
        return retrain_config(data)
    except OSError as exc:
        raise typer.BadParameter(f"{path}: {exc.strerror}", param_hint="--retrain-config") from None
    except (ValueError, ConfigError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--retrain-config") from None


def _signing_key(data_dir: Path, key: Path | None) -> PrivateKey:
    from edgeloop.hub.keys import hub_key
    from edgeloop.security import KeyFileError

    try:
        return hub_key(data_dir, key)
    except KeyFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _exit_cleanly(_sig: int, _frame: object) -> None:
    raise SystemExit(0)


def _broker(address: str) -> tuple[str, int]:
    """``HOST:PORT`` of ``--mqtt`` as a pair, or a usage error naming the option."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(
            f"expected HOST:PORT with a port in 1..65535, got {address!r}", param_hint="--mqtt"
        )
    return host, int(port)


def _open(db: str) -> HubStore:
    from sqlalchemy.exc import ArgumentError

    from edgeloop.hub.migrate import SchemaError
    from edgeloop.hub.store import HubStore

    try:
        return HubStore.open(db)
    except (ValueError, ArgumentError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except SchemaError as exc:
        typer.echo(f"error: {_shown(db)}: {exc}", err=True)
        raise typer.Exit(1) from None


def _shown(db: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(db).render_as_string(hide_password=True)
    except ArgumentError:
        return db
