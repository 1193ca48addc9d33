#!/usr/bin/env python3
"""Turns every query of the Grafana dashboards in docker/grafana/dashboards/ into a recording
rule and a `promtool test rules` test that the query returns data (scripts/dashboard-check.sh
runs it, then promtool on what it writes). Standard library only.

For each dashboard it writes into --out:
  dashboard.rules.yml  one recording rule per panel target (`dashboard:<uid>:p<id>_<refId>`),
                       Grafana's variables replaced (`$instance` -> `.*`, `$__rate_interval`,
                       `$__interval`, `$__range` -> `5m`), for `promtool check rules`;
  dashboard.test.yml   synthetic input series for every metric the queries use (every series
                       non-zero and moving, satisfying each label matcher the queries use, with
                       the scrape job's `job` and an `instance` label) and, per target, a
                       `promql_expr_test` that the query returns at least one series with a
                       value (NaN counts as no value).

Before writing it refuses, naming the panel, what hides data or breaks the `$instance` filter:
  * `or` / `unless` in a query (a series of the right-hand side is dropped whenever the left
    one has the same labels: split the query into one target per series instead);
  * a metric selector without `instance=~"$instance"`;
  * a panel without a unit, a target without a legend.
"""

import argparse
import json
import re
import sys
from pathlib import Path

GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$__interval": "5m",
    "$__range": "5m",
    "${__rate_interval}": "5m",
    "${__interval}": "5m",
    "${__range}": "5m",
}
INSTANCE_FILTER = 'instance=~"$instance"'
INSTANCE = "hissaback:8080"
# Minutes of synthetic data; queries are evaluated at the end.
MINUTES = 120
BUCKETS = [("0.005", 1), ("0.05", 3), ("0.5", 6), ("5", 9), ("+Inf", 10)]
KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "offset", "inf", "nan",
}


class Problem(Exception):
    pass


def strip_strings(expr):
    """The expression with every quoted string emptied (so words inside label values are not
    taken for operators or metric names)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def scrape_job(root):
    """The job name hissaback is scraped under, from docker/prometheus.yml (no YAML parser in
    the standard library: the first `job_name:`)."""
    text = (root / "docker/prometheus.yml").read_text()
    m = re.search(r"job_name:\s*['\"]?([A-Za-z0-9_.:-]+)", text)
    if not m:
        raise Problem("docker/prometheus.yml: no scrape job_name found")
    return m.group(1)


def selectors(expr):
    """(metric, [(label, op, value)]) of every `metric{...}` selector in the expression."""
    out = []
    for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        name = m.group(1)
        if name.lower() in KEYWORDS:
            continue
        matchers = re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2))
        out.append((name, matchers))
    return out


def bare_metrics(expr):
    """Identifiers that look like metric names used without braces (not allowed: they would
    escape the `$instance` filter)."""
    plain = strip_strings(expr)
    plain = re.sub(r"\{[^}]*\}", "{}", plain)
    plain = re.sub(r"\[[^\]]*\]", "[]", plain)
    names = []
    for m in re.finditer(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(?=\s*(.?))", plain):
        name, after = m.groups()
        if name.lower() in KEYWORDS or after in ("(", "{"):
            continue
        # Inside `by (...)`/`without (...)`/`on (...)` the words are label names.
        before = plain[: m.start()]
        if re.search(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$", before):
            continue
        if re.fullmatch(r"[0-9.eE+-]+", name):
            continue
        names.append(name)
    return names


def satisfying(op, pattern):
    """A label value that the matcher accepts."""
    if op == "=":
        return pattern
    if op in ("!=", "!~"):
        value = "synthetic_other"
        if op == "!=" and value == pattern or op == "!~" and re.fullmatch(pattern, value):
            value = "synthetic_other_2"
        return value
    # =~ : try a few readings of a simple regex.
    candidates = []
    first = pattern.split("|")[0]
    for base in (pattern, first):
        candidates.append(base)
        candidates.append(re.sub(r"\\d", "0", base).replace(".", "0").replace("*", "").replace("+", "").replace("^", "").replace("$", ""))
        candidates.append(base.replace(".*", "x").replace(".+", "x").replace(".", "0"))
    for c in candidates:
        try:
            if re.fullmatch(pattern, c):
                return c
        except re.error:
            break
    raise Problem(f'cannot make up a label value matching =~"{pattern}": use a simpler regex')


def values_for(metric):
    """promtool's expanding notation for a synthetic series of this metric."""
    if metric == "up":
        return f"1x{MINUTES}"
    if metric.endswith(("_total", "_count", "_sum")):
        return f"0+10x{MINUTES}"
    if metric.endswith("_timestamp_seconds"):
        # A real timestamp (seconds), moving with the evaluation clock.
        return f"60+60x{MINUTES}"
    return f"5+1x{MINUTES}"


def yaml_str(s):
    """A double-quoted YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(s)


def load_targets(path):
    dashboard = json.loads(path.read_text())
    uid = dashboard.get("uid") or path.stem
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    problems, targets = [], []
    panels = list(dashboard.get("panels", []))
    # Rows may nest panels.
    for p in list(panels):
        panels.extend(p.get("panels", []))
    for p in panels:
        if p.get("type") == "row":
            continue
        title = f'{path.name}: panel {p.get("id")} "{p.get("title")}"'
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{title}: no unit (fieldConfig.defaults.unit)")
        if not p.get("targets"):
            problems.append(f"{title}: no query")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            where = f'{title} target {t.get("refId")}'
            if not expr.strip():
                problems.append(f"{where}: empty expr")
                continue
            if not t.get("legendFormat"):
                problems.append(f"{where}: no legendFormat")
            plain = strip_strings(expr)
            if re.search(r"\b(or|unless)\b", plain):
                problems.append(f"{where}: `or`/`unless` hides series whose labels the other side has; use one target per series: {expr}")
            for name, matchers in selectors(expr):
                if INSTANCE_FILTER.replace(" ", "") not in [f'{l}{o}"{v}"' for l, o, v in matchers]:
                    problems.append(f'{where}: {name} is not filtered by {INSTANCE_FILTER}: {expr}')
            for name in bare_metrics(expr):
                if name not in ("time", "vector", "scalar"):
                    problems.append(f"{where}: `{name}` without a label selector (add {{{INSTANCE_FILTER}}}): {expr}")
            for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr):
                if not var.startswith("__") and var not in variables:
                    problems.append(f"{where}: ${var} is not a template variable of the dashboard")
            concrete = expr.replace("$instance", ".*").replace("${instance}", ".*")
            for k, v in GRAFANA_VARS.items():
                concrete = concrete.replace(k, v)
            if "$" in concrete:
                problems.append(f"{where}: unknown variable left in {concrete}")
            record = f'dashboard:{re.sub(r"[^A-Za-z0-9_]", "_", uid)}:p{p.get("id")}_{t.get("refId")}'
            targets.append({"where": where, "record": record, "expr": concrete})
    if "instance" not in variables:
        problems.append(f"{path.name}: no `instance` template variable")
    return targets, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    job = scrape_job(args.root)
    dashboards = sorted((args.root / "docker/grafana/dashboards").glob("*.json"))
    if not dashboards:
        raise Problem("no dashboards in docker/grafana/dashboards")
    targets, problems = [], []
    for d in dashboards:
        t, p = load_targets(d)
        targets += t
        problems += p
    if problems:
        raise Problem("\n".join(problems))

    # Synthetic series: per metric, one series per distinct set of matchers the queries use,
    # so every selector of every query matches at least one non-zero series.
    series = {}
    for t in targets:
        for name, matchers in selectors(t["expr"]):
            labels = {"job": job, "instance": INSTANCE}
            for label, op, value in matchers:
                if label in ("instance", "job") and op == "=~":
                    continue
                labels[label] = satisfying(op, value)
            if name == "up" and labels.get("job") != job:
                raise Problem(f'{t["where"]}: up{{job=...}} does not name the scrape job `{job}` of docker/prometheus.yml')
            metric_labels = [labels]
            if name.endswith("_bucket"):
                metric_labels = [dict(labels, le=le) for le, _ in BUCKETS]
            for i, ls in enumerate(metric_labels):
                key = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(ls.items())) + "}"
                if name.endswith("_bucket"):
                    per_minute = BUCKETS[i][1]
                    series[key] = f"0+{per_minute}x{MINUTES}"
                else:
                    series[key] = values_for(name)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rules = ["# Generated by scripts/dashboard_rules.py: every dashboard target as a recording rule.", "groups:", "  - name: dashboard", "    rules:"]
    for t in targets:
        rules.append(f"      # {t['where']}")
        rules.append(f"      - record: {t['record']}")
        rules.append(f"        expr: {yaml_str(t['expr'])}")
    (out / "dashboard.rules.yml").write_text("\n".join(rules) + "\n")

    test = [
        "# Generated by scripts/dashboard_rules.py: every dashboard target returns data.",
        "rule_files:",
        "  - dashboard.rules.yml",
        "evaluation_interval: 1m",
        "tests:",
        "  - interval: 1m",
        "    input_series:",
    ]
    for key, values in sorted(series.items()):
        test.append(f"      - series: {yaml_str(key)}")
        test.append(f"        values: {yaml_str(values)}")
    test.append("    promql_expr_test:")
    for t in targets:
        test.append(f"      # {t['where']}")
        # At least one series with a value (NaN >= -Inf is false): 1, else no sample at all.
        test.append(f"      - expr: {yaml_str('clamp_max(count((' + t['expr'] + ') >= -Inf), 1)')}")
        test.append(f"        eval_time: {MINUTES}m")
        test.append("        exp_samples:")
        test.append("          - labels: '{}'")
        test.append("            value: 1")
        # The recording rule records it too (the rule file is what Prometheus would load).
        test.append(f"      - expr: {yaml_str('clamp_max(count(' + t['record'] + ' >= -Inf), 1)')}")
        test.append(f"        eval_time: {MINUTES}m")
        test.append("        exp_samples:")
        test.append("          - labels: '{}'")
        test.append("            value: 1")
    (out / "dashboard.test.yml").write_text("\n".join(test) + "\n")
    print(f"{len(dashboards)} dashboards, {len(targets)} targets, {len(series)} synthetic series -> {out}")


if __name__ == "__main__":
    try:
        main()
    except Problem as e:
        print(f"dashboard_rules: {e}", file=sys.stderr)
        sys.exit(1)
