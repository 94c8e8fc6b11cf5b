"""The ``anomaly-where`` passage: where AnomalyDetector stands, from the stored runs.

The prose after README's AUROC tables of ``python -m bench anomaly`` (development sets),
``anomaly_odds`` (real ODDS sets) and ``anomaly_scale`` (1,000,000 rows), with every figure
computed from ``bench/results``: the newest full run of each entry, two earlier runs named
by their files (the ``anomaly`` and ``anomaly_scale`` runs of 2026-12-02, before one-pass
scoring and the fused Adam kernel) and the research records in
``bench/results/anomaly_research/`` (``bench/anomaly_research.py``).

Notes
-----
Research figures are means over every stored draw of a rule on a set, merged across the
research records (JSON tables and the logs of runs stopped early) the way
``python -m bench.anomaly_research --summarize`` merges them: a draw (resampling index)
measured by two records counts once, the later record's value kept. The paired comparison
of the isolation-forest term with the default (per-set arrows) uses the ``-ifo`` records
alone, where both rules score the same trained members.

Facts that are not measured (the sets' construction, the default's five members, the
issue's held-out AUROCs on ``shuttle``, the fused Adam kernel's 1e-6 agreement, which a
test checks) are kept as text.
"""

from __future__ import annotations

import re
from statistics import mean
from typing import Any, Dict, List, Sequence, Tuple

from bench.passages import MissingResult, Records, day, passage, span, table

#: The research rules the prose names (``bench/anomaly_rules.py``): the default (reconstruction
#: error + code distance + distance to ``n_clusters="auto"`` k-means centres), the earlier
#: default (10 centres), the default plus an isolation forest on the codes, reconstruction
#: error alone, and reconstruction error + distance to 10 centres without the code distance.
DEFAULT, TEN, IFO, REC, REC_TEN = ("m_rec_dist_kmA", "m_rec_dist_km10", "m_rec_dist_kmA_ifo",
                                   "m_rec", "m_rec_km10")
#: The competitors a research rule's worst-set gap is measured against
#: (``bench.anomaly_research.COMPETITORS``; not imported: that module loads Torch).
COMPETITORS = ["IForest", "ECOD", "PCA", "PyOD-AE", "PyOD-VAE", "PyOD-DeepSVDD"]
#: The issue's held-out AUROCs on ``shuttle``: quoted from the issue's text, not a result.
ISSUE_SHUTTLE = {"PyOD IForest": 0.9975, "PyOD ECOD": 0.9929, "PyOD PCA": 0.9899}
#: The earlier runs the prose compares with, before one-pass scoring and the fused Adam kernel.
EARLIER_ANOMALY = "anomaly-20261202-115151.json"
EARLIER_SCALE = "anomaly_scale-20261202-124054.json"
AD = "AnomalyDetector"
LEVEL = 0.005     # AUROCs closer than this are "level" (equal at the 2 decimals quoted)
WITHIN = 0.01     # issue 19's "within 0.01 of the best"
_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()
_LOG = re.compile(r"^\S+ \S+ (\S+)\s+(\S+)\s+(?:rep (\d+) )?AUROC (\S+)")


def _word(n: int) -> str:
    """``n`` in words up to twelve, in digits above."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def _secs(x: float) -> str:
    """Seconds as the prose quotes them: one decimal below 10, whole seconds above."""
    return f"{x:.1f}" if x < 10 else f"{x:,.0f}"


def _name(system: str, possessive: bool = False, short: bool = False) -> str:
    """A bench system's name in prose: ``PyOD IForest`` -> ``PyOD's IForest`` (``PyOD
    IForest's`` when ``possessive``; ``IForest`` when ``short``), the chapter's
    ``Autoencoder`` -> the chapter's workflow."""
    if system.startswith("Autoencoder (chapter)"):
        return "the chapter's workflow"
    if system.startswith("PyOD "):
        base = system[len("PyOD "):]
        if short:
            return base + ("'s" if possessive else "")
        return system + "'s" if possessive else f"PyOD's {base}"
    return system + ("'s" if possessive else "")


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + items[-1]


def _aurocs(rec: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
    """System -> set -> AUROC of an ``anomaly``/``anomaly_odds`` run."""
    per = (rec.get("result") or {}).get("per_set")
    if not per:
        raise MissingResult(f"`{rec.get('_file')}` has no per-set results")
    return {s: {d: c["auroc"] for d, c in by.items() if "auroc" in c} for s, by in per.items()}


def _seconds(rec: Dict[str, Any], system: str = AD) -> Dict[str, float]:
    """Set -> fit + score seconds of ``system`` in an ``anomaly`` run."""
    return {d: c["seconds"] for d, c in rec["result"]["per_set"][system].items()
            if "seconds" in c}


def _gap_to_best(aur: Dict[str, Dict[str, float]], d: str, system: str = AD
                 ) -> Tuple[float, str]:
    """How far ``system`` lies below the best other system on set ``d``, and that system."""
    best = max((s for s in aur if s != system and d in aur[s]), key=lambda s: aur[s][d])
    return aur[best][d] - aur[system][d], best


def _research_files(records: Records, pattern: str) -> List[Dict[str, Any]]:
    """The research records ``anomaly_research-<pattern>*.json``, in name order."""
    folder = records.dir / "anomaly_research"
    recs = []
    for path in sorted(folder.glob(f"anomaly_research-{pattern}*.json")):
        try:
            rec = records.named(f"anomaly_research/{path.name}")
        except MissingResult:   # not a record (the MNIST blow-up list)
            continue
        if rec.get("results"):
            recs.append(rec)
    if not recs:
        raise MissingResult(f"no research record `anomaly_research-{pattern}*.json` is stored")
    return recs


def _merged(records: Records, pattern: str = "") -> Dict[str, Dict[str, List[float]]]:
    """Rule -> set -> its draws' AUROCs, merged over the research records matching
    ``pattern`` (and, for all of them, the logs of runs stopped early) as ``--summarize``
    does: one value per draw index, a later record's replacing an earlier one's."""
    draws: Dict[str, Dict[str, Dict[int, float]]] = {}
    for rec in _research_files(records, pattern):
        for m, by_set in rec["results"].items():
            for d, cell in by_set.items():
                vals = cell.get("runs") or ([cell["auroc"]] if "auroc" in cell else [])
                draws.setdefault(m, {}).setdefault(d, {}).update(
                    (i, v) for i, v in enumerate(vals) if v == v)
    if not pattern:
        for path in sorted((records.dir / "anomaly_research").glob("anomaly_research-*.log")):
            for line in path.read_text().splitlines():
                hit = _LOG.match(line)
                if hit:
                    draws.setdefault(hit.group(2), {}).setdefault(hit.group(1), {})[
                        int(hit.group(3) or 0)] = float(hit.group(4))
    return {m: {d: list(v.values()) for d, v in by.items() if v} for m, by in draws.items()}


def _m(table: Dict[str, Dict[str, List[float]]], rule: str, sets: Sequence[str]) -> float:
    """The mean over ``sets`` of ``rule``'s mean AUROC over its draws on each."""
    try:
        return mean(mean(table[rule][d]) for d in sets)
    except KeyError as exc:
        raise MissingResult(f"no research draw of `{rule}` on {exc}") from None


def _worst_gap(table: Dict[str, Dict[str, List[float]]], rule: str, sets: Sequence[str]
               ) -> float:
    """``rule``'s largest gap below the best research competitor on one of ``sets``."""
    gaps = [max(mean(table[c][d]) for c in COMPETITORS if d in table.get(c, {}))
            - mean(table[rule][d]) for d in sets]
    return max(0.0, *gaps)


def _best(table: Dict[str, Dict[str, List[float]]], sets: Sequence[str]) -> str:
    """The research rule (``m_*``) with the highest mean over ``sets``, among those
    measured on all of them."""
    rules = [m for m in table if m.startswith("m_") and all(d in table[m] for d in sets)]
    return max(rules, key=lambda m: _m(table, m, sets))


def _stamp(rec: Dict[str, Any]) -> str:
    """The date (YYYY-MM-DD) in a research record's file name."""
    hit = re.search(r"-(\d{4})(\d{2})(\d{2})-\d{6}\.json$", rec["_file"])
    return "-".join(hit.groups()) if hit else "?"


def _development(records: Records) -> str:
    """The first paragraph: the development sets, the default's choice, the ifo term."""
    rec = records.latest("anomaly")
    aur, sec = _aurocs(rec), _seconds(rec)
    sets = [d for d in aur[AD]]
    others = [s for s in aur if s != AD]
    means = {s: mean(aur[s][d] for d in sets) for s in aur}
    ranked = sorted(others, key=means.get, reverse=True)[:3]
    lead = ("ahead of every competitor's" if all(means[AD] > means[s] for s in others)
            else "behind the best competitor's")
    comp = ", ".join(f"{_name(s, short=i > 0)} {means[s]:.3f}" for i, s in enumerate(ranked))
    early = records.named(EARLIER_ANOMALY)
    e_aur, e_sec = _aurocs(early)[AD], _seconds(early)
    diff = {d: abs(e_aur[d] - aur[AD][d]) for d in sets if d in e_aur}
    most = max(diff.values())
    moved = [d for d in sets if d in diff and diff[d] >= most / 2]
    small = [d for d in sets if d != "topics"]

    research = _merged(records)
    centres = _research_files(records, "centres")
    draws = [len(research[m][d]) for m in (DEFAULT, TEN) for c in centres
             if "small" in c["_file"] for d in c["sets"]]
    r = {m: {d: mean(v) for d, v in research[m].items()} for m in (DEFAULT, TEN)}

    def vs(d: str) -> str:
        best = _gap_to_best(aur, d)[1]
        return f"{aur[AD][d]:.3f} against {aur[best][d]:.3f}"

    first = [d for d in ("topics", "sparse") if _gap_to_best(aur, d)[0] < 0]
    syn_gap = _gap_to_best(aur, "synthetic")[0]
    syn = ("level with the best" if syn_gap < LEVEL else f"{syn_gap:.2f} below the best")
    tab_gaps = [_gap_to_best(aur, d)[0] for d in ("wdbc", "wine")]
    ifo_aur = {m: {d: mean(v) for d, v in by.items()}
               for m, by in _merged(records, "ifo").items()}
    ifo_files = _research_files(records, "ifo")
    gaps = rec["result"]["worst_set_gaps"]
    smallest = min(others, key=lambda s: gaps[s]["gap"])
    repl = [t for t in rec["result"]["targets"] if t["name"].startswith("worst-set gap")]
    if not repl:
        raise MissingResult(f"`{rec['_file']}` has no worst-set gap target")
    nobody = all(g["gap"] > WITHIN for g in gaps.values())
    ifo_gap, def_gap = _worst_gap(research, IFO, sets), _worst_gap(research, DEFAULT, sets)
    return (
        f"Where it stands. The table is the `python -m bench anomaly` run of {day(rec)} "
        f"(`{rec['_file']}`) with the current default (`n_clusters=\"auto\"`), on "
        f"{_word(len(sets))} development sets: the {_word(len(sets) - 1)} before and `topics`, "
        "the scale run's clustered sparse layout (50 topics of co-occurring columns, "
        "anomalies that mix two topics) at 10,000 rows. "
        f"Its mean AUROC, {means[AD]:.3f}, is {lead} ({comp}). Fitting and scoring its five "
        f"members took {_secs(min(sec[d] for d in small))}-{_secs(max(sec[d] for d in small))}"
        f" s on the small and MNIST sets and {_secs(sec['topics'])} s on `topics` (the members "
        "are scored together in one pass of one Python worker per task; the run of "
        f"{day(early)} (`{early['_file']}`), which chained one transform per member, took "
        f"{_secs(min(e_sec.values()))}-{_secs(max(e_sec.values()))} s; its AUROCs differ by "
        f"up to {most:.2f}, on {_and(moved)}: Adam's fused kernel and the plain dense "
        "step's hand-written gradients, adopted since, agree with the default kernel and with "
        "autograd to rounding, about 1e-6 per step, enough to take training on a slightly "
        "different path). The default changed because the earlier one (10 centres) scored below chance "
        f"on the clustered layout ({r[TEN]['topics']:.2f} on `topics`); the research runs "
        "(`bench/anomaly_research.py`, the `-centres` runs in `bench/results/anomaly_research/`"
        ", with every stored draw of a rule merged as its `--summarize` does: "
        f"{span(draws, '{:.0f}')} draws of the small sets) put the auto rule "
        f"at {_m(research, DEFAULT, sets):.3f} over the {_word(len(sets))} sets against "
        f"{_m(research, TEN, sets):.3f} for 10 centres. "
        f"It is {'first' if len(first) == 2 else 'not first'} on the clustered sets (topics "
        f"{aur[AD]['topics']:.3f}, sparse {aur[AD]['sparse']:.3f}: IForest "
        f"{aur['PyOD IForest']['topics']:.2f} and {aur['PyOD IForest']['sparse']:.2f}), "
        f"{syn} on the correlated synthetic set, "
        f"{min(tab_gaps):.2f}-{max(tab_gaps):.2f} below the best on the small tabular sets "
        f"(wdbc {vs('wdbc')}, wine {vs('wine')}), and well below IForest on the image-like "
        f"sets: MNIST ({aur[AD]['mnist-0']:.3f} against {aur['PyOD IForest']['mnist-0']:.3f})"
        f" and 8x8 digits ({aur[AD]['digits-0']:.3f} against "
        f"{aur['PyOD IForest']['digits-0']:.3f}), where the rare class (zeros, 3 % of the "
        "rows) forms a group of its own that every autoencoder learns to reconstruct (PyOD's "
        "AutoEncoder and VAE stay near 0.5 there too, "
        f"{aur['PyOD AutoEncoder']['digits-0']:.2f} and {aur['PyOD VAE']['digits-0']:.2f}), "
        "and that gets a k-means centre of its own once there are more centres than classes "
        f"(10 centres scored {r[TEN]['digits-0']:.2f} on digits-0, auto "
        f"{r[DEFAULT]['digits-0']:.2f}, over the research draws). \"Never more than 0.01 "
        f"below the best on any set\" is met by {'no detector' if nobody else 'some detectors'}"
        " in the comparison, and the proposed replacement (a worst-set gap no larger than the "
        f"smallest competitor's, {_name(smallest, possessive=True)} "
        f"{gaps[smallest]['gap']:.3f}) is {'met' if repl[0]['met'] else 'missed'}: "
        f"{gaps[AD]['gap']:.3f}, {gaps[AD]['set']}. An isolation forest on each member's codes "
        "as a fourth term (Deep Isolation Forest's idea; `-ifo` runs of "
        f"{_stamp(ifo_files[-1])} in `bench/results/anomaly_research/`) "
        f"{'narrows' if ifo_gap < def_gap else 'does not narrow'} that gap ({ifo_gap:.3f} "
        f"over the research draws, {def_gap:.3f} for the default) but costs the clustered "
        "sets more ("
        + ", ".join(f"{d} {ifo_aur[DEFAULT][d]:.2f} -> {ifo_aur[IFO][d]:.2f}"
                 for d in ("topics", "sparse"))
        + f"; mean {_m(research, IFO, sets):.3f} against {_m(research, DEFAULT, sets):.3f}), "
        "so the default stays as it is.")


def _odds(records: Records) -> str:
    """The ODDS paragraph: the real sets no default was chosen on, and the research rules
    scored on them."""
    rec = records.latest("anomaly_odds")
    aur = _aurocs(rec)
    sizes = {row[0]: row for row in table(rec, "The ODDS sets read")["rows"]}
    sets = list(aur[AD])
    others = [s for s in aur if s != AD]
    means = {s: mean(aur[s][d] for d in sets) for s in aur}
    best = max(others, key=means.get)
    level = [s for s in others if s != best and abs(means[s] - means[AD]) < LEVEL]
    gaps = {d: _gap_to_best(aur, d) for d in sets}
    within = sum(g <= WITHIN for g, _ in gaps.values())
    sh_gap, sh_best = gaps["shuttle"]
    same = all(abs(aur[s]["shuttle"] - v) < 5e-5 for s, v in ISSUE_SHUTTLE.items())
    issue = ", ".join(f"{_name(s, short=True)} {v}" for s, v in ISSUE_SHUTTLE.items())
    shuttle = (f"gives the competitors exactly the AUROCs of the issue's held-out set "
               f"(the issue quotes {issue})" if same else
               "gives the competitors " + ", ".join(
                   f"{_name(s, short=True)} {aur[s]['shuttle']:.4f}" for s in ISSUE_SHUTTLE)
               + f" (the issue's held-out set: {issue})")
    worst = sorted(sets, key=lambda d: gaps[d][0], reverse=True)[:2]
    chance = sorted(s for s in aur if aur[s]["vertebral"] >= 0.5)
    plain = sorted(["Autoencoder (chapter)", "PyOD AutoEncoder"])
    but = "the plain autoencoders" if chance == plain else _and([_name(s) for s in chance])
    opt_gap, opt_best = gaps["optdigits"]
    if sorted(worst) == ["optdigits", "vertebral"]:
        why = ("the gap comes from the case the development sets already showed: `optdigits` "
               f"(ODDS's digit 0 against the other digits, {aur[AD]['optdigits']:.3f} against "
               f"{_name(opt_best, possessive=True, short=True)} {aur[opt_best]['optdigits']:.3f}"
               ", the `digits-0` failure) and `vertebral` "
               f"({sizes['vertebral'][1]:,} rows of {sizes['vertebral'][2]} features, where "
               f"every detector but {but} scores below chance)")
    else:
        why = "its largest gaps are on " + _and(
            [f"`{d}` ({gaps[d][0]:.3f} below {_name(gaps[d][1], short=True)})" for d in worst])

    research = _merged(records)
    odds = [f"odds-{d}" for d in sets]
    every = [d for d in _aurocs(records.latest("anomaly"))[AD]] + odds
    top_all, top_odds = _best(research, every), _best(research, odds)
    n_odds = len({d for r in _research_files(records, "odds") for by in r["results"].values()
                  for d in by if d.startswith("odds-")})
    rt_odds, rt_all = _m(research, REC_TEN, odds), _m(research, REC_TEN, every)
    vs_if = ("above" if rt_odds > means["PyOD IForest"] else "below")
    lvl = (" is level with " + _and([f"{_name(s)} ({means[s]:.3f})" for s in level]) + " and"
           if level else "")
    return (
        "On real ODDS sets that no default was chosen on (`python -m bench anomaly_odds`, run "
        "by name with `SPARKAE_ODDS_DIR` naming a folder of ODDS's `.mat` files; the sets are "
        "not redistributed, the record keeps each file's SHA-256), the same systems run the "
        f"same way (`{rec['_file']}`, {day(rec)}). ODDS's `shuttle` "
        f"({sizes['shuttle'][1]:,} rows, {sizes['shuttle'][2]} features, built from UCI's "
        "Statlog (Shuttle) by ODDS's recipe, `bench.bench_anomaly_odds.odds_shuttle`) "
        f"{shuttle}; AnomalyDetector scores {aur[AD]['shuttle']:.3f} there, {sh_gap:.3f} "
        f"below {_name(sh_best, short=True)}"
        f"{' (within 0.01 of the best)' if sh_gap <= WITHIN else ''}, and the chapter's "
        f"workflow {aur['Autoencoder (chapter)']['shuttle']:.3f}. Over all {_word(len(sets))} "
        f"sets its mean, {means[AD]:.3f},{lvl} "
        f"{'below' if means[AD] < means[best] else 'above'} {_name(best, True, True)} "
        f"{means[best]:.3f}, and it is within 0.01 of the best on {within} of them; {why}. "
        f"The research harness scored the candidate rules on the same {_word(n_odds)} sets "
        f"(`anomaly_research-odds-*.json`): over the {len(every)} development and ODDS sets "
        f"the default has {'the highest' if top_all == DEFAULT else 'not the highest'} mean "
        f"({_m(research, DEFAULT, every):.3f}; with the isolation-forest term "
        f"{_m(research, IFO, every):.3f}, reconstruction error alone "
        f"{_m(research, REC, every):.3f}). Reconstruction error with the distance to a fixed "
        "10 centres (no code distance) has "
        f"{'the best' if top_odds == REC_TEN else 'a high'} mean on the ODDS sets alone "
        f"({rt_odds:.3f}, {vs_if} IForest's {means['PyOD IForest']:.3f} there) but "
        f"{rt_all:.3f} over all {len(every)}: it scores {mean(research[REC_TEN]['topics']):.2f}"
        " on `topics`, where 50 groups share 10 centres. "
        + ("So the ODDS sets confirm the default rather than change it." if top_all == DEFAULT
           else f"Over all of them `{top_all}` has the highest mean."))


def _scale(records: Records) -> str:
    """The scale sentences: the newest run of the default size and of the widest one."""
    newest: Dict[Tuple[int, int], Dict[str, Any]] = {}
    for r in records.runs("anomaly_scale"):
        size = r["result"].get("scale") or {}
        newest[(size.get("rows") or 0, size.get("cols") or 0)] = r
    if not newest:
        raise MissingResult("no full run of `anomaly_scale` is stored")
    narrow, wide = (newest[k] for k in (min(newest, key=lambda k: (k[1], k[0])),
                                        max(newest, key=lambda k: (k[1], k[0]))))
    if narrow is wide:
        raise MissingResult("`anomaly_scale` runs of one table size only are stored")
    early = records.named(EARLIER_SCALE)

    def parts(rec: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any], str]:
        sc = rec["result"]["scale"]
        iso = next((v for k, v in sc.items() if k.startswith("isolation forest")), {})
        return sc[AD], iso, f"{sc['rows']:,} x {sc['cols']:,}"

    ad, iso, size = parts(narrow)
    wad, wiso, wsize = parts(wide)
    if "seconds" in wiso:
        other = (f"against {_secs(wiso['seconds'])} s for LinkedIn's isolation forest (AUROC "
                 f"{wiso['auroc']:.3f})")
    else:
        other = (f"while LinkedIn's isolation forest had not finished after "
                 f"{_secs(wiso.get('timed_out_s', float('nan')))} s, when the run stopped it "
                 "(`SPARKAE_BENCH_IF_TIMEOUT_S`; its time stands as a lower bound)")
    return (
        f"At scale (`python -m bench anomaly_scale`, {size} of the topics layout, "
        f"{narrow['machine']['usable_cores']} cores, {day(narrow)}, `{narrow['_file']}`) "
        f"AnomalyDetector fitted and scored in {_secs(ad['seconds'])} s (fit "
        f"{_secs(ad['fit_s'])}, score {_secs(ad['score_s'])}; AUROC {ad['auroc']:.3f}; "
        f"{_secs(early['result']['scale'][AD]['seconds'])} s on {day(early)}, "
        f"`{early['_file']}`, before one-pass scoring and the fused Adam kernel) against "
        f"{_secs(iso['seconds'])} s for LinkedIn's isolation forest (AUROC {iso['auroc']:.3f})"
        ": its fit trains on a sample of `max_samples` rows, so only the passes that count, "
        "sample and score grow with the table. "
        f"On {wide['result']['scale']['cols']:,}-wide sparse rows the members train with "
        "reconstruction sampling and score without a full-width output: at "
        f"{wsize} (`SPARKAE_BENCH_ANOMALY_FULL=1`, {day(wide)}, `{wide['_file']}`) "
        f"AnomalyDetector fitted and scored in {_secs(wad['seconds'])} s (fit "
        f"{_secs(wad['fit_s'])}, score {_secs(wad['score_s'])}; AUROC {wad['auroc']:.3f}), "
        f"{other}.")


@passage("anomaly-where")
def anomaly_where(records: Records) -> str:
    """Where AnomalyDetector stands: the development sets, the ODDS sets and the scale runs,
    every figure from the stored results (README, after the anomaly tables)."""
    return _development(records) + "\n\n" + _odds(records) + "\n" + _scale(records)
