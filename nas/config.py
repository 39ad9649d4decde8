"""A search's settings: ``SearchConfig`` (what ``odml search`` takes), its
checks, the run folder's names, and ``prepare``, which checks everything a
search needs (settings, space, device, data, run folder) before anything is
written and hands the rest of the search a ``Prepared``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from odml.devices.device import parse_device
from odml.errors import OdmlError
from odml.files import read_jsonl
from odml.nas.reward import check_reward
from odml.nas.space import SearchSpace, space_for_input
from odml.runfolder import RunFolder

STRATEGIES = ("evolution", "random", "bayesian", "hyperband", "oneshot")
LATENCY = ("measured", "predicted", "hybrid")
SCHEMA = 1
TRIALS = "trials.jsonl"
FRONT_MEASURED = "front_measured.jsonl"
SCREENED = "screened.jsonl"
PROXIES = "proxies.jsonl"
MAC_BOUND = "mac_bound.json"
FAILURES = "failures.jsonl"
LATENCY_CACHE = "latency_cache.jsonl"  # in the run folder, unless --latency-cache names another
MAX_FAILURES = 10  # consecutive failed trials before the search stops, saying why
SETTINGS = "search.json"
ROLES = ("single", "chief", "worker")


class SearchError(OdmlError):
    """Settings that cannot start (or resume) a search."""


@dataclass
class SearchConfig:
    space: str = "small32"
    data: str | None = None  # default: digits, or shapes-seg for a segmentation space
    task: str | None = None  # what the space's models must do (classify, segment); default: what the space says
    device: str = "host"
    target_ms: float = 1.0
    reward: str = "mnas"
    exponent: float | None = None
    strategy: str = "evolution"
    trials: int = 20
    epochs: int = 3
    batch_size: int = 64
    lr: float = 3e-3
    precision: str = "int8"
    threads: int = 1
    runs: int = 30
    max_params: int | None = None
    max_macs: int | None = None
    reject_factor: float = 3.0  # skip candidates whose optimistic latency is above this x target
    population: int = 10  # regularized evolution
    sample: int = 3
    val_split: float = 0.2
    seed: int = 0
    input_size: int | None = None  # override the space's input size
    benchmark_binary: str | None = None
    latency_cache: str | None = None
    max_minutes: float | None = None  # stop starting new trials after this long (this invocation)
    latency: str = "measured"  # measured | predicted | hybrid
    predictor: str | None = None  # a predictor.json (odml calibrate); None: calibrate into the run folder first
    calibrate_minutes: float = 10.0
    promising: float = 1.5  # predicted/hybrid: candidates predicted above this x target are not trained
    screen: str | None = None  # evolution: none | latency | proxy | predictor (None: latency with a predictor)
    children: int | None = None  # children screened per evolution trial (None: 8)
    proxy: str = "az_nas"  # the zero-cost proxy of --screen proxy (nas/proxies.py)
    distribute: str = "none"  # each trial trained with tf.distribute: none | mirrored (odml.train.distribute)
    statistic: str = "min"  # a candidate's latency: its fastest timed run (reproducible) or the median
    supernet_epochs: int | None = None  # oneshot: epochs of the supernet and controller (None: --epochs)
    supernet_rule: str = "single"  # oneshot: one path per step, or the sandwich rule with in-place distillation

    # settings that must match to resume a run folder
    IDENTITY = ("data", "task", "device", "target_ms", "reward", "exponent", "strategy", "epochs", "batch_size", "lr",
                "precision", "threads", "val_split", "seed", "input_size", "max_params", "max_macs",
                "reject_factor", "population", "sample", "latency", "predictor", "promising", "screen", "children", "proxy", "statistic",
                "supernet_epochs", "supernet_rule")


@dataclass
class Prepared:
    cfg: SearchConfig
    space: SearchSpace
    exponent: float
    out: Path
    device: Any
    data: Any = None
    records: list[dict[str, Any]] = field(default_factory=list)
    predictor: Any = None
    meter: Any = None  # the search's LatencyMeter, made once on the latency cache (nas.evaluate.latency_meter)


def _check_config(cfg: SearchConfig) -> tuple[SearchSpace, float, Any]:
    w = check_reward(cfg.reward, cfg.target_ms, cfg.exponent)
    if cfg.strategy not in STRATEGIES:
        raise SearchError(f"--strategy {cfg.strategy!r}: choose one of {', '.join(STRATEGIES)}")
    for name, v, lo in (("--trials", cfg.trials, 1), ("--epochs", cfg.epochs, 1), ("--batch-size", cfg.batch_size, 1),
                        ("--threads", cfg.threads, 1), ("--runs", cfg.runs, 1), ("--population", cfg.population, 2),
                        ("--sample", cfg.sample, 1)):
        if v < lo:
            raise SearchError(f"{name} {v}: must be at least {lo}")
    if not 0 < cfg.val_split < 1:
        raise SearchError(f"--val-split {cfg.val_split:g}: must be between 0 and 1")
    if cfg.max_minutes is not None and not cfg.max_minutes > 0:
        raise SearchError(f"--max-minutes {cfg.max_minutes:g}: must be greater than 0")
    _check_latency(cfg)
    if cfg.statistic not in ("min", "median"):
        raise SearchError(f"--statistic {cfg.statistic!r}: choose min (the fastest timed run) or median")
    if cfg.reject_factor <= 1:
        raise SearchError(f"--reject-above {cfg.reject_factor:g}: must be greater than 1 (a multiple of the target)")
    if cfg.input_size is not None and cfg.input_size < 8:
        raise SearchError(f"--input-size {cfg.input_size}: at least 8")
    space = space_for_input(cfg.space, cfg.input_size)
    device = parse_device(cfg.device, cfg.benchmark_binary, compile=True)
    _check_task(cfg, space)
    _check_distribute(cfg, space)
    if cfg.strategy == "oneshot" and space.decoder is not None:
        raise SearchError(f"--strategy oneshot: space {space.name} segments; the supernet shares weights of "
                          "classifiers only; use --strategy evolution")
    if cfg.strategy == "oneshot" and any(t == "ibn_grouped" for st in space.stages for j in range(max(st.depth))
                                         for t in st.at(j).type):
        raise SearchError(f"--strategy oneshot: space {space.name} has ibn_grouped blocks, which the supernet does "
                          "not share weights for yet; use --strategy evolution")
    if (cfg.latency != "measured" or cfg.strategy == "oneshot") and cfg.predictor is not None:
        from odml.nas.predictor import load_predictor

        load_predictor(cfg.predictor).check(device, space, cfg.precision, cfg.threads, "interpreter", cfg.statistic)
    return space, w, device


TASK_DATA = {"classify": "digits", "segment": "shapes-seg"}


def _check_task(cfg: SearchConfig, space: SearchSpace) -> None:
    """--task against what the space's models do: a segmentation search needs
    a space with a decoder head, a classification one a space without; the
    task and the default data settled."""
    if cfg.task is not None and cfg.task not in TASK_DATA:
        raise SearchError(f"--task {cfg.task!r}: choose classify or segment")
    if cfg.task == "segment" and space.task != "segment":
        raise SearchError(f"--task segment: space {space.name} has no decoder head to search (a segmentation space "
                          "has a 'decoder' section; the built-in one is autoseg64)")
    if cfg.task == "classify" and space.task != "classify":
        raise SearchError(f"--task classify: space {space.name} segments (it has a decoder head)")
    cfg.task = space.task
    cfg.data = cfg.data or TASK_DATA[cfg.task]


def _check_latency(cfg: SearchConfig) -> None:
    """The settings of predicted latency: --latency, --promising,
    --calibrate-minutes, --screen, --supernet-epochs."""
    if cfg.latency not in LATENCY:
        raise SearchError(f"--latency {cfg.latency!r}: choose one of {', '.join(LATENCY)}")
    if cfg.latency != "measured" and not cfg.promising > 1:
        raise SearchError(f"--promising {cfg.promising:g}: must be greater than 1 (a multiple of the target)")
    if (cfg.latency != "measured" or cfg.strategy == "oneshot") and cfg.predictor is None \
            and not cfg.calibrate_minutes > 0:
        raise SearchError(f"--calibrate-minutes {cfg.calibrate_minutes:g}: must be greater than 0")
    _check_screen(cfg)
    if cfg.supernet_rule not in ("single", "sandwich"):
        raise SearchError(f"--supernet-rule {cfg.supernet_rule!r}: choose single or sandwich")
    if cfg.supernet_rule != "single" and cfg.strategy != "oneshot":
        raise SearchError(f"--supernet-rule {cfg.supernet_rule}: only --strategy oneshot trains a supernet")
    if cfg.supernet_epochs is not None:
        if cfg.strategy != "oneshot":
            raise SearchError(f"--supernet-epochs {cfg.supernet_epochs}: only --strategy oneshot trains a supernet")
        if cfg.supernet_epochs < 1:
            raise SearchError(f"--supernet-epochs {cfg.supernet_epochs}: must be at least 1")


def _check_distribute(cfg: SearchConfig, space: SearchSpace) -> None:
    """--distribute of a search: mirrored trains each trial on this machine's
    devices; trials spread across hosts through keras-tuner's --role."""
    from odml.train.distribute import check

    if cfg.distribute == "multiworker":
        raise SearchError("--distribute multiworker: a search spreads its trials across hosts with --role chief / "
                          "--role worker (each host trains its own trials, with --distribute mirrored on its GPUs); "
                          "multiworker trains one model across hosts: odml train")
    c = check(cfg.distribute)
    if c.kind != "none" and space.task != "classify":
        raise SearchError(f"--distribute {c.kind}: the segmentation loop trains on one device; search space "
                          f"{space.name} segments")


def _check_screen(cfg: SearchConfig) -> None:
    """--screen, --children and --proxy. ``--screen N`` (before screens had
    names) is the latency screen over N children, 1 none."""
    from odml.nas.proxies import check_proxy
    from odml.nas.screen import SCREENS

    given = cfg.screen
    if cfg.screen is not None and str(cfg.screen).isdigit():
        n = int(cfg.screen)
        if n < 1:
            raise SearchError(f"--screen {cfg.screen}: must be at least 1 (1: no screening)")
        cfg.screen, cfg.children = ("none", None) if n == 1 else ("latency", cfg.children or n)
    check_proxy(cfg.proxy)
    if cfg.screen is None:
        cfg.screen = "latency" if cfg.latency != "measured" and cfg.strategy == "evolution" else "none"
    elif cfg.screen not in SCREENS:
        raise SearchError(f"--screen {cfg.screen!r}: choose one of {', '.join(SCREENS)}")
    elif cfg.screen != "none" and cfg.strategy != "evolution":
        raise SearchError(f"--screen {given}: screening ranks the evolution's children, so it needs "
                          f"--strategy evolution (not {cfg.strategy})")
    if cfg.children is not None and cfg.children < 2:
        raise SearchError(f"--children {cfg.children}: must be at least 2 (one child per trial is no screening)")
    if cfg.children is not None and cfg.screen == "none":
        raise SearchError(f"--children {cfg.children}: children are screened only with --screen latency, proxy or "
                          "predictor")


def _old_screen(old: dict[str, Any]) -> dict[str, Any]:
    """A search.json of before screens had names: --screen N or nothing, as
    the screen and children the checks make of them now."""
    screen = old.get("screen")
    if screen is None or isinstance(screen, int):
        n = screen
        old = dict(old)
        if n is None:
            old["screen"] = "latency" if old.get("latency") != "measured" and old.get("strategy") == "evolution" \
                else "none"
        else:
            old["screen"], old["children"] = ("none", None) if n == 1 else ("latency", old.get("children") or n)
    return old


def prepare(cfg: SearchConfig, out: Path, role: str = "single") -> Prepared:
    """Check everything a search needs before anything is written: the
    settings, the space, the device, the data and the run folder."""
    space, w, device = _check_config(cfg)
    data = load_data(cfg, space)
    out = Path(out)
    if role == "worker":  # a worker joins the chief's run: the chief checked the folder
        run_folder(out).check({}, keys=(), foreign_ok=True)
    else:
        run_folder(out).check(search_settings(cfg, space), keys=(*SearchConfig.IDENTITY, "space"), upgrade=_old_screen,
                              defaults={"task": "classify", "children": None, "proxy": "az_nas", "supernet_rule": "single"})  # runs from before these settings
    return Prepared(cfg=cfg, space=space, exponent=w, out=out, device=device, data=data)


def load_data(cfg: SearchConfig, space: SearchSpace) -> Any:
    """The search's data at the space's input size: images in class folders,
    or images with masks for a segmentation space."""
    size = (space.input_size, space.input_size)
    if space.task == "segment":
        from odml.data.segmentation import load_segmentation

        return load_segmentation(cfg.data, size, 3, cfg.val_split, cfg.seed)
    from odml.data.images import load_images

    return load_images(cfg.data, size, 3, cfg.val_split, cfg.seed)


def run_folder(out: Path) -> RunFolder:
    return RunFolder(out, SETTINGS, "search", SearchError)


def search_settings(cfg: SearchConfig, space: SearchSpace) -> dict[str, Any]:
    """What search.json holds: the settings, the space as searched, the schema."""
    d = asdict(cfg)
    d["space_name"] = cfg.space
    d["space"] = space.to_dict()
    d["space"]["input_size"] = space.input_size
    d["schema"] = SCHEMA
    return d


def check_prepared_for_resume(p: Prepared) -> int:
    """How many trials the run folder already holds."""
    return len(read_jsonl(p.out / TRIALS))
