"""Issue 24's benchmark: the MobileNetEdgeTPUV2 zoo against searches of the
edgetpu_v2 and small32 spaces on the generated `shapes` proxy task.

1. The zoo (MobileNetEdgeTPUV2 tiny, xs, s scaled to --input-size and 10
   classes) is measured (int8, one thread, host) and trained with the proxy
   budget (--epochs) through the evaluator the search uses, once per seed in
   --seeds, so that each model's seed-to-seed spread is known.
2. The latency target defaults to the fastest zoo model's latency (the zoo
   at its own best operating point).
3. Each search in --searches (STRATEGY[+LATENCY][/SCREEN]:SPACE, e.g.
   evolution+hybrid:edgetpu_v2, evolution/proxy:edgetpu_v2 with --proxy and
   --children) gets the same wall-time budget (--minutes), once per seed of
   --search-seeds (the table gives the mean best reward and its spread):
   a trial-based search stops starting trials after it (a hybrid one first
   calibrates its predictor for --calibrate-minutes, taken from its budget);
   oneshot (oneshot/sandwich: the sandwich rule) spends it on calibration, --supernet-epochs of supernet
   and controller, and the standalone training of the architecture found
   (its wall time is reported as measured, budget or not).
4. Every model is scored with the same reward (abs, TuNAS: accuracy +
   beta * |latency / target - 1|), and the best of each search is compared
   with every zoo model's mean reward plus its seed spread.

    python tests/bench/search_shapes.py --data shapes:6000 --input-size 64 --epochs 4 \\
        --minutes 15 --seeds 0,1 --searches evolution:small32,evolution:edgetpu_v2,oneshot:small32

Prints one table and writes OUT/report.json; rerun the same command to resume
(zoo results are kept in OUT/zoo.jsonl; a search that finished its budget is
not run again, one that was interrupted resumes from its folder).
Run it from a copy of the tree (TF re-reads source while tracing).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    from odml.files import append_jsonl, read_jsonl
    from odml.nas.latency import LatencyMeter
    from odml.nas.reward import DEFAULT_EXPONENT, reward
    from odml.nas.runner import Evaluator, SearchConfig, finish, prepare, run_search
    from odml.zoo.registry import create_spec

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="shapes:6000")
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--zoo", default="tiny,xs,s")
    ap.add_argument("--searches", default="evolution:small32,evolution:edgetpu_v2,oneshot:small32")
    ap.add_argument("--supernet-epochs", type=int, default=6)
    ap.add_argument("--calibrate-minutes", type=float, default=3)
    ap.add_argument("--target-ms", type=float, default=None)
    ap.add_argument("--reward", default="abs")
    ap.add_argument("--search-seeds", default=None, help="seeds of each search (default: the first of --seeds)")
    ap.add_argument("--proxy", default="az_nas", help="the proxy of the /proxy screen")
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--out", default="runs/bench_search_shapes")
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in a.seeds.split(",")]
    w = DEFAULT_EXPONENT[a.reward]

    # 1. the zoo, every seed, through the search's evaluator (same meter, same proxy training)
    zoo_log = root / "zoo.jsonl"
    done = {(r["name"], r["seed"]): r for r in read_jsonl(zoo_log)}
    for seed in seeds:
        cfg = SearchConfig(space="edgetpu_v2", data=a.data, input_size=a.input_size, target_ms=a.target_ms or 1.0,
                           epochs=a.epochs, reward=a.reward, reject_factor=1e9, seed=seed)
        bp = None
        for short in a.zoo.split(","):
            name = f"mobilenet_edgetpu_v2_{short}"
            if (short, seed) in done:
                continue
            if bp is None:
                bp = prepare(cfg, root / f"zoo_seed{seed}", role="worker")
                bp.out.mkdir(exist_ok=True)
                ev = Evaluator(bp, LatencyMeter(bp.device, "int8", 1, 30, 0.3, root / "latency_cache.jsonl"))
            spec = create_spec(name, num_classes=10, input_size=a.input_size)
            m = ev.evaluate(spec, a.epochs, [], name)
            rec = {"name": short, "seed": seed, "accuracy": m["accuracy"], "latency_ms": m["latency_ms"],
                   "params": spec.params, "macs": spec.macs, "wall_s": round(m["wall_s"], 1), "line": spec.to_line()}
            append_jsonl(zoo_log, rec)
            done[(short, seed)] = rec
            print(f"zoo {short} seed {seed}: accuracy {m['accuracy']:.4f}, {m['latency_ms']:.3f} ms, "
                  f"{spec.params:,} parameters ({m['wall_s']:.0f} s)", flush=True)
    zoo = []
    for short in a.zoo.split(","):
        runs = [done[(short, s)] for s in seeds]
        lat = statistics.median(r["latency_ms"] for r in runs)
        zoo.append({"name": short, "accuracy": [r["accuracy"] for r in runs], "latency_ms": lat,
                    "params": runs[0]["params"], "macs": runs[0]["macs"],
                    "wall_s": round(statistics.mean(r["wall_s"] for r in runs), 1)})
    target = a.target_ms or min(z["latency_ms"] for z in zoo)
    for z in zoo:
        rs = [reward(a.reward, q, z["latency_ms"], target, w) for q in z["accuracy"]]
        z.update(reward_mean=statistics.mean(rs), reward_spread=max(rs) - min(rs), rewards=rs)
    print(f"target {target:.3f} ms (reward {a.reward}, exponent {w})", flush=True)

    # 2. the searches, equal wall time each, once per search seed
    search_seeds = [int(x) for x in (a.search_seeds or str(seeds[0])).split(",")]
    results = []
    for item in a.searches.split(","):
        strat, space = item.split(":")
        strat, _, screen = strat.partition("/")  # evolution/proxy: each trial the pick of --children screened
        rule = "single"
        if strat == "oneshot":  # oneshot/sandwich: the supernet's rule instead of a screen
            rule, screen = screen or "single", ""
        strat, _, latency = strat.partition("+")  # evolution+hybrid: latency predicted first, measured when trained
        runs = []
        for sseed in search_seeds:
            cfg = SearchConfig(space=space, data=a.data, input_size=a.input_size, target_ms=target, reward=a.reward,
                               strategy=strat, trials=1000, epochs=a.epochs, seed=sseed, latency=latency or "measured",
                               max_minutes=(a.minutes - (a.calibrate_minutes if latency else 0)) if strat != "oneshot"
                               else None, calibrate_minutes=a.calibrate_minutes,
                               supernet_epochs=a.supernet_epochs if strat == "oneshot" else None,
                               screen=screen or None, children=a.children if screen not in ("", "none") else None,
                               proxy=a.proxy, supernet_rule=rule)
            folder = root / (f"{strat}{'_' + latency if latency else ''}{'_' + screen if screen else ''}"
                             f"{'_' + rule if rule != 'single' else ''}_{space}"
                             f"{'_seed' + str(sseed) if len(search_seeds) > 1 else ''}")
            t1 = time.perf_counter()
            p = prepare(cfg, folder)
            wall_file = folder / "bench_wall.json"  # written when the search has had its budget: not run again
            if not wall_file.exists():
                run_search(p)
                wall_file.write_text(json.dumps({"wall_s": time.perf_counter() - t1}))
            s = finish(p)
            wall = json.loads(wall_file.read_text())["wall_s"]
            best = s["best"]
            r = {"search": item, "seed": sseed, "trials": s["trials"], "considered": s.get("considered", s["trials"]),
                 "wall_s": round(wall, 1), "accuracy": best["accuracy"], "latency_ms": best["latency_ms"],
                 "reward": reward(a.reward, best["accuracy"], best["latency_ms"], target, w),
                 "params": best["params"], "line": best.get("line") or best.get("spec_line"),
                 "screen_tau": (s.get("screen") or {}).get("kendall_tau"),
                 "predictor_tau": (s.get("screen") or {}).get("predictor_tau")}
            if strat == "oneshot":  # how far the supernet and its controller got
                ep = read_jsonl(folder / "oneshot" / "log.jsonl")
                uniform = sum(math.log(len(v)) for v in p.space.dimensions().values())
                r.update(supernet_rule=rule, entropy=[e["entropy"] for e in ep],
                         supernet_accuracy=[e["supernet_accuracy"] for e in ep],
                         entropy_uniform=round(uniform, 2), supernet_wall_s=ep[-1]["wall_s"] if ep else None)
                print(f"  supernet ({rule}): accuracy by epoch {r['supernet_accuracy']}, controller entropy "
                      f"{r['entropy']} (uniform {uniform:.1f})", flush=True)
            runs.append(r)
            print(f"{item} seed {sseed}: {r['trials']} trials ({r['considered']} considered) in {wall / 60:.1f} min; "
                  f"best reward {r['reward']:.4f}, accuracy {r['accuracy']:.4f}, {r['latency_ms']:.3f} ms", flush=True)
        rs = [r["reward"] for r in runs]
        best_run = max(runs, key=lambda r: r["reward"])
        results.append({**best_run, "rewards": rs, "reward": statistics.mean(rs),
                        "reward_spread": max(rs) - min(rs), "trials": round(statistics.mean(r["trials"] for r in runs), 1),
                        "considered": round(statistics.mean(r["considered"] for r in runs), 1), "runs": runs})

    # 3. the table
    print()
    print(f"{'model':<28}{'reward':>9}{'spread':>8}{'accuracy':>18}{'ms':>8}{'params':>12}{'wall s':>8}"
          f"{'considered':>11}")
    for z in zoo:
        acc = "/".join(f"{q:.3f}" for q in z["accuracy"])
        print(f"zoo v2_{z['name']:<22}{z['reward_mean']:>9.4f}{z['reward_spread']:>8.4f}{acc:>18}"
              f"{z['latency_ms']:>8.3f}{z['params']:>12,}{z['wall_s']:>8.0f}{1:>11}")
    for r in results:
        print(f"{r['search']:<28}{r['reward']:>9.4f}{r['reward_spread']:>8.4f}{r['accuracy']:>18.3f}"
              f"{r['latency_ms']:>8.3f}{r['params']:>12,}{r['wall_s']:>8.0f}{r['considered']:>11}")
    for r in results:
        print(f"{r['search']}: {r['line']}")
    winner = max(results, key=lambda r: r["reward"]) if results else None
    verdict = []
    if winner:
        for z in zoo:
            margin = winner["reward"] - z["reward_mean"]
            verdict.append({"zoo": z["name"], "margin": round(margin, 4), "spread": round(z["reward_spread"], 4),
                            "beaten_beyond_spread": margin > z["reward_spread"]})
        print(f"winner at equal wall time: {winner['search']}")
        for v in verdict:
            print(f"  against v2_{v['zoo']}: reward {v['margin']:+.4f} (seed spread {v['spread']:.4f}): "
                  f"{'beaten beyond the spread' if v['beaten_beyond_spread'] else 'not beyond the spread'}")
    (root / "report.json").write_text(json.dumps(
        {"data": a.data, "input_size": a.input_size, "epochs": a.epochs, "minutes": a.minutes, "seeds": seeds,
         "search_seeds": search_seeds, "proxy": a.proxy, "children": a.children,
         "target_ms": target, "reward": a.reward, "exponent": w, "zoo": zoo, "searches": results,
         "winner": winner["search"] if winner else None, "verdict": verdict}, indent=2))


if __name__ == "__main__":
    main()
