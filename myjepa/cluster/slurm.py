"""What a SLURM cluster offers, read from `sinfo` and `scontrol show partition`.

sinfo gives the nodes of each partition (grouped by identical CPUs, memory and GRES), scontrol the
partition's own settings (default flag, state, time limit). The parsers take the commands' text so
that tests can feed them captured output; `read_cluster` runs the commands.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field

from myjepa.errors import UserError

SINFO_ARGS = ["sinfo", "-h", "-o", "%P|%D|%c|%m|%G"]  # partition (* = default) | nodes | CPUs | MB | GRES
SCONTROL_ARGS = ["scontrol", "-o", "show", "partition"]
UNTYPED = ""  # the GPU "model" of a GRES without type, e.g. gpu:4


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of one partition that share CPUs, memory and GRES (one sinfo line)."""

    nodes: int
    cpus: int
    mem_mb: int
    gpus: dict[str, int]  # GPU model (UNTYPED when the GRES has no type) -> GPUs per node

    def gpus_of(self, model: str | None) -> int:
        """GPUs per node of `model` (of any model when None)."""
        return sum(self.gpus.values()) if model is None else self.gpus.get(model, 0)


@dataclass
class Partition:
    name: str
    default: bool = False
    up: bool = True
    max_minutes: int | None = None  # None: no time limit
    groups: list[NodeGroup] = field(default_factory=list)

    def gpu_totals(self) -> dict[str, int]:
        """GPU model -> number of GPUs of that model in the whole partition."""
        totals: dict[str, int] = {}
        for g in self.groups:
            for model, n in g.gpus.items():
                totals[model] = totals.get(model, 0) + n * g.nodes
        return totals

    def gpu_nodes(self, model: str | None) -> list[NodeGroup]:
        """The node groups with GPUs of `model` (any model when None)."""
        return [g for g in self.groups if (g.gpus if model is None else g.gpus.get(model, 0))]

    def nodes_with_gpus(self, model: str | None, count: int) -> int:
        """How many nodes have at least `count` GPUs of `model` (of any model when None)."""
        return sum(g.nodes for g in self.gpu_nodes(model) if g.gpus_of(model) >= count)

    def max_gpus_per_node(self, model: str | None) -> int:
        return max((g.gpus_of(model) for g in self.gpu_nodes(model)), default=0)

    def summary(self) -> str:
        """One line of facts, as shown to the user and written into the profile's header."""
        limit = "none" if self.max_minutes is None else format_minutes(self.max_minutes)
        nodes = "; ".join(
            f"{g.nodes} x ({g.cpus} CPUs, {g.mem_mb} MB"
            + "".join(f", gres gpu:{m + ':' if m else ''}{n}" for m, n in sorted(g.gpus.items()))
            + ")"
            for g in self.groups
        )
        flags = (" (default)" if self.default else "") + ("" if self.up else " (DOWN)")
        return f"{self.name}{flags}: time limit {limit}; nodes {nodes}"


def parse_time(text: str) -> int | None:
    """A SLURM time limit in minutes (seconds rounded down); None for no limit.

    Formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, and UNLIMITED / infinite / NONE.
    """
    text = text.strip()
    if text.lower() in ("unlimited", "infinite", "none", "n/a"):
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise UserError(f"cannot read the SLURM time limit {text!r}")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        return days * 1440 + a * 60 + (b or 0)
    if c is not None:  # HH:MM:SS
        return a * 60 + b
    return a  # MM or MM:SS


def format_minutes(minutes: int) -> str:
    days, rest = divmod(minutes, 1440)
    return (f"{days}-" if days else "") + f"{rest // 60:02d}:{rest % 60:02d}:00"


def parse_gres(text: str) -> dict[str, int]:
    """GPU model -> GPUs per node from a sinfo GRES field like `gpu:h100:8(S:0-1),nvme:1` or `(null)`."""
    gpus: dict[str, int] = {}
    for item in re.split(r",(?![^(]*\))", text.strip()):  # commas outside parentheses
        parts = re.sub(r"\(.*\)$", "", item).split(":")
        if parts[0] != "gpu":
            continue
        model = parts[1] if len(parts) == 3 else UNTYPED
        count = re.match(r"\d+", parts[-1]) if len(parts) > 1 else None
        gpus[model] = gpus.get(model, 0) + (int(count.group()) if count else 1)
    return gpus


def parse_sinfo(text: str) -> dict[str, Partition]:
    """Partitions and their node groups from `sinfo -h -o '%P|%D|%c|%m|%G'`."""
    partitions: dict[str, Partition] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if any("\udc80" <= c <= "\udcff" for c in line):  # a byte `text` could not decode
            raise UserError(f"cannot read this sinfo line (bytes that are not UTF-8 text): {line!r}; nothing written")
        fields = line.strip().split("|")
        if len(fields) != 5:
            raise UserError(f"cannot read this sinfo line (expected 5 fields): {line!r}")
        name, nodes, cpus, mem, gres = fields
        if nodes.strip() == "0":  # a partition without nodes: nothing can run there
            continue
        try:
            group = NodeGroup(int(nodes), int(cpus.rstrip("+")), int(mem.rstrip("+")), parse_gres(gres))
        except ValueError:
            raise UserError(f"cannot read this sinfo line (nodes, CPUs and memory must be numbers): {line!r}") from None
        if min(group.nodes, group.cpus, group.mem_mb) < 1:
            raise UserError(
                f"cannot use this sinfo line (nodes, CPUs and memory must be positive, a profile made of them would "
                f"ask for none): {line!r}; nothing written"
            )
        partitions.setdefault(name.rstrip("*"), Partition(name.rstrip("*"), default=name.endswith("*")))
        partitions[name.rstrip("*")].groups.append(group)
    return partitions


def parse_scontrol(text: str, partitions: dict[str, Partition]) -> None:
    """Add default flag, state and time limit from `scontrol -o show partition` (one line each)."""
    for line in text.splitlines():
        keys = dict(token.split("=", 1) for token in line.split() if "=" in token)
        part = partitions.get(keys.get("PartitionName", ""))
        if part is None:  # a partition without nodes: sinfo does not list it, nothing can run there
            continue
        part.default = keys.get("Default") == "YES"
        part.up = keys.get("State", "UP") == "UP"
        part.max_minutes = parse_time(keys.get("MaxTime", "UNLIMITED"))


def run_slurm(args: list[str]) -> str:
    """A SLURM command's stdout; no SLURM or a failed command is one clear UserError."""
    if shutil.which(args[0]) is None:
        raise UserError(f"no SLURM on this machine: `{args[0]}` is not on PATH; nothing written")
    try:
        proc = subprocess.run(args, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise UserError(f"`{' '.join(args)}` timed out: no SLURM controller answers; nothing written") from None
    if proc.returncode != 0:
        reason = (text(proc.stderr).strip().splitlines() or ["no message"])[-1]
        raise UserError(f"`{' '.join(args)}` failed: {reason}; nothing written")
    return text(proc.stdout)


def text(output: bytes) -> str:
    """A command's output as text: UTF-8, with any other byte kept as a lone surrogate (\\udcXX), so that a
    value that is not text is refused where it is used, and the rest is read as usual."""
    return output.decode("utf-8", "surrogateescape")


def read_cluster() -> dict[str, Partition]:
    """The partitions of the cluster this machine submits to."""
    partitions = parse_sinfo(run_slurm(SINFO_ARGS))
    parse_scontrol(run_slurm(SCONTROL_ARGS), partitions)
    if not partitions:
        raise UserError("sinfo lists no partitions with nodes; nothing written")
    return partitions


def account_exists(account: str) -> bool | str:
    """True / False from SLURM's accounting, or why it cannot be asked."""
    if shutil.which("sacctmgr") is None:
        return "sacctmgr is not on PATH"
    proc = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "account", account, "format=Account"], capture_output=True, timeout=30
    )
    if proc.returncode != 0:
        return (text(proc.stderr).strip().splitlines() or ["sacctmgr failed"])[-1]
    return account in text(proc.stdout).split()
