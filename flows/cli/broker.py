"""``eventlake broker``: run the embedded Kafka broker, create topics on it, take its
brokers down and up."""

from __future__ import annotations

from pathlib import Path

import click

from common.errors import BrokerError
from flows.cli.options import state_file_option
from flows.cli.params import env_option
from sources.broker import (
    DEFAULT_TOPICS,
    BrokerState,
    create_topic,
    read_state,
    serve,
    set_broker_up,
)
from sources.topics import parse_topic_list, parse_topic_spec


@click.group(invoke_without_command=True)
@env_option(
    "--brokers-count",
    env="BROKERS_COUNT",
    type=click.IntRange(1, 16),
    default=1,
    help="Number of brokers in the embedded cluster.",
)
@env_option(
    "--topics",
    env="BROKER_TOPICS",
    default=",".join(str(t) for t in DEFAULT_TOPICS),
    help="Topics to create, NAME[:PARTITIONS],... (partitions default to 8).",
)
@state_file_option
@click.pass_context
def broker(ctx: click.Context, brokers_count: int, topics: str, state_file: Path) -> None:
    """Run the embedded Kafka broker (librdkafka's mock cluster) until Ctrl-C.

    Prints the bootstrap servers as the first line of stdout. In-memory only:
    everything is gone when it stops.
    """
    if ctx.invoked_subcommand is None:
        serve(parse_topic_list(topics), brokers_count, state_file)


_running_state_file_option = env_option(
    "--state-file",
    env="STATE_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where the running broker records its address. [default: `eventlake broker "
    "--state-file`, i.e. .eventlake/broker.json]",
)
_broker_id_argument = click.argument(
    "broker_id", metavar="[ID]", type=click.IntRange(min=1), required=False
)


def _running_broker(ctx: click.Context, state_file: Path | None) -> BrokerState:
    """The broker recorded in the subcommand's --state-file, else in the group's."""
    assert ctx.parent is not None
    state_file = state_file or ctx.parent.params["state_file"]
    state = read_state(state_file)
    if state is None:
        raise BrokerError(
            f"no embedded broker is running (no live {state_file}); start `eventlake broker`"
        )
    return state


@broker.command("create-topic")
@click.argument("spec")
@_running_state_file_option
@click.pass_context
def broker_create_topic(ctx: click.Context, spec: str, state_file: Path | None) -> None:
    """Create topic SPEC (NAME[:PARTITIONS]) on the running embedded broker."""
    topic = parse_topic_spec(spec)
    create_topic(_running_broker(ctx, state_file).control_socket, topic)
    click.echo(f"created topic {topic.name} with {topic.partitions} partitions")


@broker.command("down")
@_broker_id_argument
@_running_state_file_option
@click.pass_context
def broker_down(ctx: click.Context, broker_id: int | None, state_file: Path | None) -> None:
    """Take broker ID, or every broker, down to simulate an outage.

    ID is 1 to the running broker's --brokers-count. A broker that is down drops
    its connections and refuses clients until `eventlake broker up`; it keeps its data.
    """
    _switch_broker(ctx, broker_id, state_file, up=False)


@broker.command("up")
@_broker_id_argument
@_running_state_file_option
@click.pass_context
def broker_up(ctx: click.Context, broker_id: int | None, state_file: Path | None) -> None:
    """Bring broker ID, or every broker, back up with the data it had."""
    _switch_broker(ctx, broker_id, state_file, up=True)


def _switch_broker(
    ctx: click.Context, broker_id: int | None, state_file: Path | None, up: bool
) -> None:
    set_broker_up(_running_broker(ctx, state_file).control_socket, broker_id, up)
    which = "every broker" if broker_id is None else f"broker {broker_id}"
    click.echo(f"{which} is {'up' if up else 'down'}")
